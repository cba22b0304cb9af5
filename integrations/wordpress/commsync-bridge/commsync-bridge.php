<?php
/**
 * Plugin Name:       commsync bridge
 * Description:       Connects an Ultimate Multisite network to commsync: the network's events are forwarded to commsync (never lost: queued here first, retried until commsync takes them), so commsync sends the system emails.
 * Version:           0.1.0
 * Requires at least: 6.1
 * Requires PHP:      8.1
 * Network:           true
 * License:           MIT
 *
 * Configuration: Network Admin → Settings → commsync (the key is stored encrypted), or, taking
 * precedence, in wp-config.php:
 *   define('COMMSYNC_URL', 'https://comms.example.net');  // where `commsync serve` listens
 *   define('COMMSYNC_API_KEY', '…');                     // the admin key (COMMSYNC_API_KEY there)
 *   define('COMMSYNC_BRIDGE_TAKE_OVER_EMAILS', false);    // optional: Ultimate Multisite keeps
 *                                                         // sending the events commsync covers
 *
 * @package CommsyncBridge
 */

declare(strict_types=1);

if (! defined('ABSPATH')) {
	exit;
}

define('COMMSYNC_BRIDGE_VERSION', '0.1.0');

require_once __DIR__ . '/includes/class-client.php';
require_once __DIR__ . '/includes/class-retry.php';
require_once __DIR__ . '/includes/class-events.php';
require_once __DIR__ . '/includes/class-takeover.php';
require_once __DIR__ . '/includes/class-sync.php';
require_once __DIR__ . '/includes/class-notices.php';
require_once __DIR__ . '/includes/class-settings.php';

register_activation_hook(
	__FILE__,
	static function (): void {
		Commsync_Bridge_Events::install();
		Commsync_Bridge_Sync::install();
	}
);

add_action('plugins_loaded', static function (): void {
	$client = Commsync_Bridge_Client::from_config();
	$events = new Commsync_Bridge_Events($client);
	$events->register();
	(new Commsync_Bridge_Takeover($client, $events))->register();
	$sync = new Commsync_Bridge_Sync($client);
	$sync->register();
	(new Commsync_Bridge_Settings($sync))->register();
	(new Commsync_Bridge_Notices($client))->register();
});
