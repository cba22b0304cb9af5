<?php
// One run of the bridge's cron hook, as WP-Cron would run it; prints the events table.
do_action(Commsync_Bridge_Events::CRON);
global $wpdb;
$rows = $wpdb->get_results('SELECT uuid, event, status, attempts, last_error FROM ' . Commsync_Bridge_Events::table() . ' ORDER BY id', ARRAY_A);
foreach ($rows as &$row) {
	$row['attempts'] = (int) $row['attempts'];
}
echo wp_json_encode($rows), "\n";
