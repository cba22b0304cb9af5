<?php
/**
 * Customers, products and memberships kept in sync with commsync through its platform API.
 *
 * Ultimate Multisite's models fire `do_action("wu_{$this->model}_post_save", $data, $this, $new)`
 * after a save and `do_action("wu_{$this->model}_post_delete", $result, $this)` after a delete
 * (inc/models/class-base-model.php:624 in `save()` and :663 in `delete()`, Multisite-Ultimate/ultimate-multisite at c6d398be).
 * On those hooks this class only notes *what* changed (a product by slug, a customer by id, a
 * customer's memberships) in its own table; a WP-Cron run then sends each as it is *then* — many
 * saves of one customer become one request — products first, customers next, memberships last
 * (they name both). Failures are retried with the events' backoff; a refusal (400, 409, 422) is
 * kept with its reason. Customers and memberships keep Ultimate Multisite's ids; products are
 * keyed by their slug. `full_sync()` notes every record of the network.
 *
 * @package CommsyncBridge
 */

declare(strict_types=1);

if (! defined('ABSPATH')) {
	exit;
}

final class Commsync_Bridge_Sync {
	public const CRON  = 'commsync_bridge_sync';
	public const BATCH = 100;
	private const PAGE = 100; // records per query of a full sync

	public function __construct(private Commsync_Bridge_Client $client) {
	}

	public static function table(): string {
		global $wpdb;
		return $wpdb->base_prefix . 'commsync_sync';
	}

	public static function install(): void {
		global $wpdb;
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$table   = self::table();
		$charset = $wpdb->get_charset_collate();
		dbDelta(
			"CREATE TABLE {$table} (
				id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
				kind varchar(16) NOT NULL,
				item varchar(191) NOT NULL,
				action varchar(8) NOT NULL,
				status varchar(16) NOT NULL DEFAULT 'pending',
				attempts int(10) unsigned NOT NULL DEFAULT 0,
				next_at datetime NOT NULL,
				last_error text NULL,
				PRIMARY KEY  (id),
				UNIQUE KEY item (kind, item),
				KEY due (status, next_at)
			) {$charset};"
		);
	}

	public function register(): void {
		add_action('wu_customer_post_save', fn ($data, $customer) => $this->customer_saved($customer), 10, 2);
		add_action('wu_customer_post_delete', fn ($result, $customer) => $this->note('customer', (string) $customer->get_id(), 'delete'), 10, 2);
		add_action('wu_product_post_save', fn ($data, $product) => $this->note('product', (string) $product->get_slug(), 'put'), 10, 2);
		add_action('wu_product_post_delete', fn ($result, $product) => $this->note('product', (string) $product->get_slug(), 'delete'), 10, 2);
		add_action('wu_membership_post_save', fn ($data, $membership) => $this->note('memberships', (string) $membership->get_customer_id(), 'put'), 10, 2);
		add_action('wu_membership_post_delete', fn ($result, $membership) => $this->note('memberships', (string) $membership->get_customer_id(), 'put'), 10, 2);
		add_action(self::CRON, [$this, 'run']);
		if (! wp_next_scheduled(self::CRON)) {
			wp_schedule_event(time(), 'commsync_minute', self::CRON);
		}
	}

	private function customer_saved(object $customer): void {
		$this->note('customer', (string) $customer->get_id(), 'put');
		$this->note('memberships', (string) $customer->get_id(), 'put');
	}

	/** Note that one record changed (or went): sent by the next cron run, asked for at once. */
	public function note(string $kind, string $item, string $action): void {
		global $wpdb;
		$table = self::table();
		$wpdb->query(
			$wpdb->prepare(
				"INSERT INTO {$table} (kind, item, action, status, attempts, next_at) VALUES (%s, %s, %s, 'pending', 0, UTC_TIMESTAMP())
				ON DUPLICATE KEY UPDATE action = VALUES(action), status = 'pending', attempts = 0, next_at = UTC_TIMESTAMP(), last_error = NULL",
				$kind,
				$item,
				$action
			)
		);
		wp_schedule_single_event(time(), self::CRON);
	}

	/** Every product, customer and customer's memberships of the network, noted for sending. */
	public function full_sync(): int {
		$count = 0;
		foreach (['product' => 'wu_get_products', 'customer' => 'wu_get_customers'] as $kind => $query) {
			if (! function_exists($query)) {
				continue;
			}
			for ($offset = 0; ; $offset += self::PAGE) {
				$records = $query(['number' => self::PAGE, 'offset' => $offset]);
				foreach ($records as $record) {
					if ('product' === $kind) {
						$this->note('product', (string) $record->get_slug(), 'put');
					} else {
						$this->customer_saved($record);
					}
					++$count;
				}
				if (count($records) < self::PAGE) {
					break;
				}
			}
		}
		update_site_option('commsync_bridge_last_full_sync', gmdate('c'));
		return $count;
	}

	/** The cron run: what is due, products first, then customers, then memberships. */
	public function run(): void {
		global $wpdb;
		if (! $this->client->configured()) {
			return;
		}
		$table = self::table();
		$rows  = $wpdb->get_results(
			$wpdb->prepare(
				"SELECT * FROM {$table} WHERE status = 'pending' AND next_at <= UTC_TIMESTAMP()
				ORDER BY FIELD(kind, 'product', 'customer', 'memberships'), id LIMIT %d",
				self::BATCH
			),
			ARRAY_A
		);
		foreach ($rows as $row) {
			$response = $this->send($row);
			// gone already: a delete of what commsync does not have, or the memberships of a
			// customer it no longer has (deleted meanwhile)
			$gone = 404 === $response->status && ('delete' === $row['action'] || 'memberships' === $row['kind']);
			if ($response->status >= 200 && $response->status < 300 || $gone) {
				$this->finish($row, 'done', '');
			} elseif ($response->refused() || 409 === $response->status) {
				$this->finish($row, 'refused', $response->error);
			} else {
				Commsync_Bridge_Retry::later(self::table(), $row, $response->error, $row['kind'] . ' ' . $row['item']);
			}
		}
	}

	private function send(array $row): Commsync_Bridge_Response {
		$item = (string) $row['item'];
		switch ($row['kind']) {
			case 'product':
				$product = 'put' === $row['action'] && function_exists('wu_get_product') ? wu_get_product($item) : false;
				if (! $product) {
					return $this->client->request('DELETE', '/v1/products/' . rawurlencode($item));
				}
				return $this->client->request('PUT', '/v1/products/' . rawurlencode($item), ['name' => (string) $product->get_name()]);
			case 'customer':
				$customer = 'put' === $row['action'] && function_exists('wu_get_customer') ? wu_get_customer((int) $item) : false;
				if (! $customer) {
					return $this->client->request('DELETE', '/v1/customers/' . rawurlencode($item));
				}
				return $this->client->request('PUT', '/v1/customers/' . rawurlencode($item), self::customer_fields($customer));
			default: // a customer's memberships, as they are now
				return $this->client->request('PUT', '/v1/customers/' . rawurlencode($item) . '/memberships', self::memberships($item));
		}
	}

	/** What commsync keeps of a customer: the WordPress user's address and names. */
	private static function customer_fields(object $customer): array {
		$user   = $customer->get_user();
		$fields = [
			'email'        => (string) $customer->get_email_address(),
			'username'     => (string) $customer->get_username(),
			'display_name' => (string) $customer->get_display_name(),
		];
		if ($user instanceof WP_User) {
			$fields['first_name'] = (string) $user->first_name ?: null;
			$fields['last_name']  = (string) $user->last_name ?: null;
		}
		return $fields;
	}

	/**
	 * The customer's memberships as commsync takes them: one row per membership, the product by
	 * slug (a product held twice is collapsed by commsync to the most active status).
	 */
	private static function memberships(string $customer_id): array {
		if (! function_exists('wu_get_memberships')) {
			return [];
		}
		$rows = [];
		foreach (wu_get_memberships(['customer_id' => (int) $customer_id, 'number' => 0]) as $membership) {
			$product = wu_get_product($membership->get_plan_id());
			if ($product) {
				$rows[] = ['product' => (string) $product->get_slug(), 'status' => (string) $membership->get_status()];
			}
		}
		return $rows;
	}

	private function finish(array $row, string $status, string $error): void {
		global $wpdb;
		$wpdb->update(
			self::table(),
			['status' => $status, 'attempts' => (int) $row['attempts'] + 1, 'last_error' => '' === $error ? null : $error],
			['id' => (int) $row['id']]
		);
	}
}
