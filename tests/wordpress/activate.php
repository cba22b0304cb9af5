<?php
// Network-activates the bridge (its activation hook creates its table).
require_once ABSPATH . 'wp-admin/includes/plugin.php';
$result = activate_plugin('commsync-bridge/commsync-bridge.php', '', true);
if (is_wp_error($result)) { fwrite(STDERR, $result->get_error_message() . "\n"); exit(1); }
echo is_plugin_active_for_network('commsync-bridge/commsync-bridge.php') ? "active\n" : "inactive\n";
