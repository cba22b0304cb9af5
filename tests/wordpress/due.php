<?php
// Time passes: every pending event is due now (the backoff of a failed send has run out).
global $wpdb;
$wpdb->query('UPDATE ' . Commsync_Bridge_Events::table() . " SET next_at = UTC_TIMESTAMP() WHERE status = 'pending'");
echo "due\n";
