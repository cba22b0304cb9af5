<?php
/**
 * The HTTP client for commsync's API (`commsync serve`): one request, one typed outcome.
 *
 * @package CommsyncBridge
 */

declare(strict_types=1);

if (! defined('ABSPATH')) {
	exit;
}

/**
 * What one request to commsync came to.
 */
final class Commsync_Bridge_Response {
	/**
	 * @param int         $status HTTP status, 0 when commsync could not be reached.
	 * @param array|null  $body   The decoded JSON body, if any.
	 * @param string      $error  Why the request failed, for the log and the settings page.
	 */
	public function __construct(
		public readonly int $status,
		public readonly ?array $body,
		public readonly string $error = ''
	) {
	}

	/** Accepted (202) or a repeated key commsync had already taken (200). */
	public function accepted(): bool {
		return 200 === $this->status || 202 === $this->status;
	}

	/**
	 * A refusal of the payload itself (400, 422): sending it again cannot help.
	 * Anything else — unreachable, 5xx, 401/403 (a wrong key, fixed later), 408, 413, 429 — is
	 * worth retrying.
	 */
	public function refused(): bool {
		return 400 === $this->status || 422 === $this->status;
	}
}

/**
 * Talks to commsync with the admin key.
 */
final class Commsync_Bridge_Client {
	public const TIMEOUT = 5; // seconds: commsync being slow never holds a page or a cron run long

	public function __construct(private string $url, private string $key) {
	}

	/**
	 * From wp-config.php's COMMSYNC_URL and COMMSYNC_API_KEY when defined, else from the settings
	 * page (the key stored encrypted); empty when not configured.
	 */
	public static function from_config(): self {
		$url = defined('COMMSYNC_URL') ? (string) constant('COMMSYNC_URL') : (string) get_site_option(self::URL_OPTION, '');
		$key = defined('COMMSYNC_API_KEY') ? (string) constant('COMMSYNC_API_KEY') : self::stored_key();
		return new self(rtrim($url, '/'), $key);
	}

	public const URL_OPTION = 'commsync_bridge_url';
	public const KEY_OPTION = 'commsync_bridge_key'; // AES-256-GCM under a key from WordPress's salts

	/** Whether wp-config.php sets the connection (the settings page then only shows it). */
	public static function from_constants(): bool {
		return defined('COMMSYNC_URL') && defined('COMMSYNC_API_KEY');
	}

	private static function cipher_key(): string {
		return hash('sha256', wp_salt('secure_auth') . 'commsync-bridge', true);
	}

	/** Keeps the admin key encrypted in the network's options (never in clear, never shown). */
	public static function store_key(string $key): void {
		$iv     = random_bytes(12);
		$tag    = '';
		$cipher = openssl_encrypt($key, 'aes-256-gcm', self::cipher_key(), OPENSSL_RAW_DATA, $iv, $tag);
		update_site_option(self::KEY_OPTION, base64_encode($iv . $tag . (string) $cipher));
	}

	private static function stored_key(): string {
		$raw = base64_decode((string) get_site_option(self::KEY_OPTION, ''), true);
		if (! is_string($raw) || strlen($raw) < 29) {
			return '';
		}
		$plain = openssl_decrypt(substr($raw, 28), 'aes-256-gcm', self::cipher_key(), OPENSSL_RAW_DATA, substr($raw, 0, 12), substr($raw, 12, 16));
		return is_string($plain) ? $plain : ''; // the salts changed: enter the key again
	}

	/** A short name for the commsync this client talks to: what it told is kept under it. */
	public function scope(): string {
		return substr(md5($this->url), 0, 10);
	}

	public function configured(): bool {
		return '' !== $this->url && '' !== $this->key;
	}

	/**
	 * One request; never throws.
	 *
	 * @param string     $method GET, POST, PUT or DELETE.
	 * @param string     $path   Starting with /v1/.
	 * @param array|null $body    Sent as JSON.
	 * @param string|null $bearer A customer token instead of the admin key (the feed, dismissals).
	 * @param int         $timeout Seconds before giving up.
	 */
	public function request(string $method, string $path, ?array $body = null, ?string $bearer = null, int $timeout = self::TIMEOUT): Commsync_Bridge_Response {
		if (! $this->configured()) {
			return new Commsync_Bridge_Response(0, null, 'commsync is not configured (COMMSYNC_URL, COMMSYNC_API_KEY)');
		}
		$args = [
			'method'  => $method,
			'timeout' => $timeout,
			'headers' => [
				'Authorization' => 'Bearer ' . ($bearer ?? $this->key),
				'Content-Type'  => 'application/json',
				'Accept'        => 'application/json',
			],
		];
		if (null !== $body) {
			$args['body'] = wp_json_encode($body);
		}
		$response = wp_remote_request($this->url . $path, $args);
		if (is_wp_error($response)) {
			return new Commsync_Bridge_Response(0, null, $response->get_error_message());
		}
		$status  = (int) wp_remote_retrieve_response_code($response);
		$decoded = json_decode((string) wp_remote_retrieve_body($response), true);
		$body    = is_array($decoded) ? $decoded : null;
		$error   = '';
		if ($status >= 300) {
			$detail = $body['detail'] ?? '';
			$error  = sprintf('HTTP %d: %s', $status, is_string($detail) ? $detail : wp_json_encode($detail));
		}
		return new Commsync_Bridge_Response($status, $body, $error);
	}
}
