<?php
// Fires `wu_event` for any event: $args = [slug]; a minimal payload (the bridge keeps it as given).
do_action('wu_event', $args[0], ['customer_id' => 1, 'wu_version' => '2.3.4']);
echo wp_json_encode(get_site_option('um_standin_sent', [])), "\n";
