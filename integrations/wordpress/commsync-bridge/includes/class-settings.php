<?php
/**
 * The network-admin settings page: the connection to commsync (URL and admin key — the key kept
 * encrypted with WordPress's salts, or in wp-config.php constants, and never shown again), a
 * connection test, the events waiting or refused, and the customers/products/memberships sync
 * (the last full sync, what waits or was refused, and a button that syncs everything).
 *
 * @package CommsyncBridge
 */

declare(strict_types=1);

if (! defined('ABSPATH')) {
	exit;
}

final class Commsync_Bridge_Settings {
	public const PAGE = 'commsync-bridge';

	public function __construct(private Commsync_Bridge_Sync $sync) {
	}

	public function register(): void {
		add_action('network_admin_menu', [$this, 'menu']);
	}

	public function menu(): void {
		add_submenu_page('settings.php', 'commsync', 'commsync', 'manage_network_options', self::PAGE, [$this, 'page']);
	}

	private function handle(): string {
		if ('POST' !== ($_SERVER['REQUEST_METHOD'] ?? '') || ! isset($_POST['commsync_do'])) {
			return '';
		}
		check_admin_referer(self::PAGE);
		if (! current_user_can('manage_network_options')) {
			wp_die('Not allowed.', 403);
		}
		$do = sanitize_key(wp_unslash((string) $_POST['commsync_do']));
		if ('save' === $do && ! Commsync_Bridge_Client::from_constants()) {
			$url = esc_url_raw(trim(wp_unslash((string) ($_POST['commsync_url'] ?? ''))));
			update_site_option(Commsync_Bridge_Client::URL_OPTION, $url);
			$key = trim(wp_unslash((string) ($_POST['commsync_key'] ?? '')));
			if ('' !== $key) { // empty: keep the stored key
				Commsync_Bridge_Client::store_key($key);
			}
			update_site_option(Commsync_Bridge_Takeover::OPTION, isset($_POST['commsync_take_over']) ? '1' : '0');
			return 'Saved.';
		}
		if ('test' === $do) {
			$response = Commsync_Bridge_Client::from_config()->request('GET', '/v1/event-types');
			if (200 === $response->status) {
				return sprintf('Connected: commsync handles %d event types.', count($response->body['event_types'] ?? []));
			}
			return 'Not connected: ' . ($response->error ?: 'no answer');
		}
		if ('sync' === $do) {
			$noted = $this->sync->full_sync();
			$this->sync->run();
			return sprintf('Full sync: %d records noted and sent (what failed is retried).', $noted);
		}
		return '';
	}

	public function page(): void {
		global $wpdb;
		$message  = $this->handle();
		$client   = Commsync_Bridge_Client::from_config();
		$events   = Commsync_Bridge_Events::table();
		$sync     = Commsync_Bridge_Sync::table();
		$pending  = (int) $wpdb->get_var("SELECT COUNT(*) FROM {$events} WHERE status = 'pending'");
		$refused  = $wpdb->get_results("SELECT uuid, event, last_error FROM {$events} WHERE status = 'refused' ORDER BY id DESC LIMIT 20", ARRAY_A);
		$waiting  = (int) $wpdb->get_var("SELECT COUNT(*) FROM {$sync} WHERE status = 'pending'");
		$rejected = $wpdb->get_results("SELECT kind, item, last_error FROM {$sync} WHERE status = 'refused' ORDER BY id DESC LIMIT 20", ARRAY_A);
		$last     = (string) get_site_option('commsync_bridge_last_full_sync', 'never');
		echo '<div class="wrap"><h1>commsync</h1>';
		if ('' !== $message) {
			printf('<div class="notice notice-info" id="commsync-message"><p>%s</p></div>', esc_html($message));
		}
		echo '<form method="post">';
		wp_nonce_field(self::PAGE);
		echo '<h2>Connection</h2><table class="form-table">';
		if (Commsync_Bridge_Client::from_constants()) {
			printf('<tr><th>commsync URL</th><td><code>%s</code> (COMMSYNC_URL in wp-config.php)</td></tr>', esc_html((string) constant('COMMSYNC_URL')));
			echo '<tr><th>Admin key</th><td>set in wp-config.php (COMMSYNC_API_KEY)</td></tr>';
		} else {
			printf(
				'<tr><th><label for="commsync_url">commsync URL</label></th><td><input type="url" class="regular-text" id="commsync_url" name="commsync_url" value="%s"></td></tr>',
				esc_attr((string) get_site_option(Commsync_Bridge_Client::URL_OPTION, ''))
			);
			printf(
				'<tr><th><label for="commsync_key">Admin key</label></th><td><input type="password" class="regular-text" id="commsync_key" name="commsync_key" value="" autocomplete="off" placeholder="%s"></td></tr>',
				esc_attr($client->configured() ? 'stored — leave empty to keep it' : 'COMMSYNC_API_KEY of commsync serve')
			);
		}
		if (defined('COMMSYNC_BRIDGE_TAKE_OVER_EMAILS')) {
			printf('<tr><th>System emails</th><td>%s (COMMSYNC_BRIDGE_TAKE_OVER_EMAILS in wp-config.php)</td></tr>', Commsync_Bridge_Takeover::enabled() ? 'commsync sends those of the events it handles' : 'Ultimate Multisite sends all of them');
		} elseif (! Commsync_Bridge_Client::from_constants()) {
			printf(
				'<tr><th>System emails</th><td><label><input type="checkbox" id="commsync_take_over" name="commsync_take_over" value="1"%s> commsync sends the system emails of the events it handles; Ultimate Multisite stops sending those (and only those)</label></td></tr>',
				Commsync_Bridge_Takeover::enabled() ? ' checked' : ''
			);
		}
		echo '</table><p>';
		if (! Commsync_Bridge_Client::from_constants()) {
			echo '<button class="button button-primary" name="commsync_do" value="save" id="commsync-save">Save</button> ';
		}
		echo '<button class="button" name="commsync_do" value="test" id="commsync-test">Test the connection</button></p>';
		printf('<h2>Events</h2><p id="commsync-pending">Waiting to be sent: %d</p>', $pending);
		echo '<table class="widefat" id="commsync-refused"><thead><tr><th>Refused event</th><th>Key</th><th>Why</th></tr></thead><tbody>';
		foreach ($refused as $row) {
			printf('<tr><td>%s</td><td><code>%s</code></td><td>%s</td></tr>', esc_html($row['event']), esc_html($row['uuid']), esc_html((string) $row['last_error']));
		}
		echo '</tbody></table>';
		printf('<h2>Customers, products and memberships</h2><p id="commsync-last-sync">Last full sync: %s. Waiting: %d.</p>', esc_html($last), $waiting);
		echo '<table class="widefat" id="commsync-sync-refused"><thead><tr><th>Refused</th><th>Which</th><th>Why</th></tr></thead><tbody>';
		foreach ($rejected as $row) {
			printf('<tr><td>%s</td><td>%s</td><td>%s</td></tr>', esc_html($row['kind']), esc_html($row['item']), esc_html((string) $row['last_error']));
		}
		echo '</tbody></table><p><button class="button" name="commsync_do" value="sync" id="commsync-sync">Sync everything now</button></p>';
		echo '</form></div>';
	}
}
