<?php
/**
 * commsync's dashboard notices as WordPress's own admin notices, on each customer's sub-site.
 *
 * The customer is the one who owns the sub-site — Ultimate Multisite: the site's membership, and
 * that membership's customer (`wu_get_current_site()` in inc/functions/site.php:18,
 * `Site::get_membership()` and `Site::get_customer_id()` in inc/models/class-site.php:1037 and
 * :921, `Membership::get_customer_id()` in inc/models/class-membership.php:434; Multisite-Ultimate/ultimate-multisite at c6d398be). Notices show to users who can manage that sub-site. The plugin fetches the
 * customer's feed server-side with a short-lived customer token minted by commsync
 * (`POST /v1/customers/{id}/token`, kept 10 minutes) and keeps the feed 30 seconds; each notice is
 * WordPress's core markup (`notice notice-{info|success|warning|error}`, `is-dismissible` when it
 * may be dismissed), and a dismissal goes through admin-ajax to commsync's dismiss route, so it
 * survives a reload and shows in `commsync status`. commsync being down never breaks the
 * dashboard: a 2-second timeout, nothing shown, one line in the PHP error log.
 *
 * @package CommsyncBridge
 */

declare(strict_types=1);

if (! defined('ABSPATH')) {
	exit;
}

final class Commsync_Bridge_Notices {
	public const AJAX       = 'commsync_dismiss';
	private const TIMEOUT   = 2;
	private const FEED_TTL  = 30;
	private const TOKEN_TTL = 600; // the token itself lives 15 minutes
	private const TYPES     = ['info', 'success', 'warning', 'error'];

	public function __construct(private Commsync_Bridge_Client $client) {
	}

	public function register(): void {
		add_action('admin_notices', [$this, 'render']);
		add_action('wp_ajax_' . self::AJAX, [$this, 'dismiss']);
		add_action('admin_footer', [$this, 'script']);
	}

	/** The customer owning the current sub-site, if the current user may manage it; else null. */
	public function customer_id(): ?string {
		if (is_network_admin() || is_main_site() || ! current_user_can('manage_options') || ! function_exists('wu_get_current_site')) {
			return null;
		}
		$site = wu_get_current_site();
		if (! $site) {
			return null;
		}
		$membership = $site->get_membership();
		$customer   = $membership ? (int) $membership->get_customer_id() : (int) $site->get_customer_id();
		return $customer > 0 ? (string) $customer : null;
	}

	private function token(string $customer): ?string {
		$key    = 'commsync_bridge_token_' . $customer;
		$cached = get_site_transient($key);
		if (is_string($cached) && '' !== $cached) {
			return $cached;
		}
		$response = $this->client->request('POST', '/v1/customers/' . rawurlencode($customer) . '/token', ['ttl' => '15m'], null, self::TIMEOUT);
		$token    = is_string($response->body['token'] ?? null) ? $response->body['token'] : null;
		if (null === $token) {
			error_log('commsync bridge: no feed token for customer ' . $customer . ': ' . $response->error);
			return null;
		}
		set_site_transient($key, $token, self::TOKEN_TTL);
		return $token;
	}

	/** The customer's notices, kept briefly; [] when commsync cannot say. */
	private function feed(string $customer): array {
		$key    = 'commsync_bridge_feed_' . $customer;
		$cached = get_site_transient($key);
		if (is_array($cached)) {
			return $cached;
		}
		$token = $this->token($customer);
		if (null === $token) {
			return [];
		}
		$response = $this->client->request('GET', '/v1/customers/' . rawurlencode($customer) . '/notices', null, $token, self::TIMEOUT);
		if (200 !== $response->status || ! is_array($response->body['notices'] ?? null)) {
			error_log('commsync bridge: no notices for customer ' . $customer . ': ' . $response->error);
			if (401 === $response->status) {
				delete_site_transient('commsync_bridge_token_' . $customer); // a rotated key: mint again
			}
			return [];
		}
		set_site_transient($key, $response->body['notices'], self::FEED_TTL);
		return $response->body['notices'];
	}

	public function render(): void {
		if (! $this->client->configured()) {
			return;
		}
		$customer = $this->customer_id();
		if (null === $customer) {
			return;
		}
		foreach ($this->feed($customer) as $notice) {
			$type    = in_array($notice['message_type'] ?? '', self::TYPES, true) ? $notice['message_type'] : 'info';
			$classes = 'notice notice-' . $type . ' commsync-notice' . (empty($notice['dismissible']) ? '' : ' is-dismissible');
			printf(
				'<div class="%s" data-commsync-notice="%s"><p><strong>%s</strong></p>%s</div>',
				esc_attr($classes),
				esc_attr((string) ($notice['id'] ?? '')),
				esc_html((string) ($notice['heading'] ?? '')),
				wp_kses_post((string) ($notice['html'] ?? '')) // sanitised by commsync; again here
			);
		}
	}

	/** Sends WordPress's dismiss button to admin-ajax, with a nonce. */
	public function script(): void {
		if (null === $this->customer_id()) {
			return;
		}
		$url   = wp_json_encode(admin_url('admin-ajax.php'));
		$nonce = wp_json_encode(wp_create_nonce(self::AJAX));
		$action = wp_json_encode(self::AJAX);
		echo "<script>document.addEventListener('click', function (event) {\n"
			. "  var button = event.target.closest('.commsync-notice .notice-dismiss');\n"
			. "  if (!button) { return; }\n"
			. "  var notice = button.closest('.commsync-notice').getAttribute('data-commsync-notice');\n"
			. "  var body = new URLSearchParams({action: {$action}, _ajax_nonce: {$nonce}, notice: notice});\n"
			. "  fetch({$url}, {method: 'POST', credentials: 'same-origin', body: body});\n"
			. "});</script>\n";
	}

	/** admin-ajax: the current sub-site's customer dismisses one notice, in commsync. */
	public function dismiss(): void {
		check_ajax_referer(self::AJAX);
		$customer = $this->customer_id();
		$notice   = isset($_POST['notice']) ? sanitize_text_field(wp_unslash((string) $_POST['notice'])) : '';
		if (null === $customer || '' === $notice) {
			wp_send_json_error(null, 403);
		}
		$token = $this->token($customer);
		if (null === $token) {
			wp_send_json_error(null, 503);
		}
		$path     = '/v1/customers/' . rawurlencode($customer) . '/notices/' . implode('/', array_map('rawurlencode', explode('/', $notice))) . '/dismiss';
		$response = $this->client->request('POST', $path, null, $token, self::TIMEOUT);
		delete_site_transient('commsync_bridge_feed_' . $customer);
		if (204 === $response->status) {
			wp_send_json_success();
		}
		wp_send_json_error(['detail' => $response->error], $response->status ?: 503);
	}
}
