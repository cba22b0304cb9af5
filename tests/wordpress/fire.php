<?php
// Fires Ultimate Multisite's `wu_event` for payment_received: $args = [customer id, email, reference].
do_action('wu_event', 'payment_received', commsync_test_payment_received((int) $args[0], $args[1], $args[2]));
echo "fired\n";
