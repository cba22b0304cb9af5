<?php
/**
 * Ultimate Multisite's events, forwarded to commsync — never lost.
 *
 * Ultimate Multisite fires every event through `Event_Manager::do_event()`, which ends in
 * `do_action('wu_event', $slug, $payload)` and `do_action("wu_event_{$slug}", $payload)`
 * before saving the event (inc/managers/class-event-manager.php:258-278, `do_event`, in
 * Multisite-Ultimate/ultimate-multisite at c6d398be; the payload carries `wu_version` besides the event's
 * keys). This class hooks `wu_event`: the event is first written to this plugin's own table
 * with a UUID made when the hook fired, then sent to commsync's `POST /v1/events` with that
 * UUID as the idempotency key — so a retry repeats it and two real events never share it.
 * Sending runs in WP-Cron and is retried with backoff until commsync takes the event; only a
 * refusal of the payload itself (400, 422) is final, kept with its reason.
 *
 * @package CommsyncBridge
 */

declare(strict_types=1);

if (! defined('ABSPATH')) {
	exit;
}

final class Commsync_Bridge_Events {
	public const CRON       = 'commsync_bridge_send_events';
	public const TYPES      = 'commsync_bridge_event_types'; // site transient (+ _scope): what commsync registers
	public const KNOWN      = 'commsync_bridge_known_types'; // site option: the last answer kept
	public const BATCH      = 50;
	private const TYPES_TTL = 600;

	public function __construct(private Commsync_Bridge_Client $client) {
	}

	/** The network-wide table of events (one per network, not per site). */
	public static function table(): string {
		global $wpdb;
		return $wpdb->base_prefix . 'commsync_events';
	}

	/** Activation: the table. */
	public static function install(): void {
		global $wpdb;
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$table   = self::table();
		$charset = $wpdb->get_charset_collate();
		dbDelta(
			"CREATE TABLE {$table} (
				id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
				uuid char(36) NOT NULL,
				event varchar(64) NOT NULL,
				payload longtext NOT NULL,
				status varchar(16) NOT NULL DEFAULT 'pending',
				attempts int(10) unsigned NOT NULL DEFAULT 0,
				next_at datetime NOT NULL,
				last_error text NULL,
				created_at datetime NOT NULL,
				sent_at datetime NULL,
				PRIMARY KEY  (id),
				UNIQUE KEY uuid (uuid),
				KEY due (status, next_at)
			) {$charset};"
		);
	}

	public function register(): void {
		// Early (priority 5): the event is safe here before Ultimate Multisite's own handlers run.
		add_action('wu_event', [$this, 'record'], 5, 2);
		add_action(self::CRON, [$this, 'send_pending']);
		add_filter('cron_schedules', [self::class, 'schedules']);
		if (! wp_next_scheduled(self::CRON)) {
			wp_schedule_event(time(), 'commsync_minute', self::CRON);
		}
	}

	/** A one-minute WP-Cron schedule for the retries. */
	public static function schedules(array $schedules): array {
		$schedules['commsync_minute'] = ['interval' => 60, 'display' => 'Every minute (commsync bridge)'];
		return $schedules;
	}

	/**
	 * The `wu_event` hook: keep the event, to be sent by the next cron run (asked for at once).
	 *
	 * @param string $slug    The event, e.g. payment_received.
	 * @param array  $payload What Ultimate Multisite built for it.
	 */
	public function record(string $slug, array $payload): void {
		global $wpdb;
		$now = current_time('mysql', true);
		$wpdb->insert(
			self::table(),
			[
				'uuid'       => wp_generate_uuid4(),
				'event'      => substr($slug, 0, 64),
				'payload'    => (string) wp_json_encode($payload),
				'status'     => 'pending',
				'attempts'   => 0,
				'next_at'    => $now,
				'created_at' => $now,
			]
		);
		wp_schedule_single_event(time(), self::CRON);
	}

	/**
	 * What commsync registers: event type => its payload keys; null while commsync cannot say.
	 *
	 * @return array<string, list<string>>|null
	 */
	public function event_types(): ?array {
		$cached = get_site_transient(self::TYPES . '_' . $this->client->scope());
		if (is_array($cached)) {
			return $cached;
		}
		$response = $this->client->request('GET', '/v1/event-types');
		if (200 !== $response->status || ! is_array($response->body['event_types'] ?? null)) {
			return null;
		}
		$types = [];
		foreach ($response->body['event_types'] as $type) {
			$types[(string) $type['type']] = array_map(static fn ($k) => (string) $k['name'], $type['keys']);
		}
		// kept per commsync URL: another commsync (a changed setting) is asked again
		set_site_transient(self::TYPES . '_' . $this->client->scope(), $types, self::TYPES_TTL);
		update_site_option(self::KNOWN, ['scope' => $this->client->scope(), 'types' => $types]);
		return $types;
	}

	/**
	 * The event types commsync registered when it last answered, without asking it (a page load
	 * must not wait for commsync); null until the bridge has reached commsync once.
	 *
	 * @return array<string, list<string>>|null
	 */
	public function known_types(): ?array {
		$known = get_site_transient(self::TYPES . '_' . $this->client->scope());
		if (is_array($known)) {
			return $known;
		}
		$kept = get_site_option(self::KNOWN, null);
		return is_array($kept) && ($kept['scope'] ?? '') === $this->client->scope() && is_array($kept['types'] ?? null)
			? $kept['types']
			: null;
	}

	/** The cron run: send what is due, oldest first. */
	public function send_pending(): void {
		global $wpdb;
		if (! $this->client->configured()) {
			return;
		}
		$table = self::table();
		$rows  = $wpdb->get_results(
			$wpdb->prepare(
				"SELECT * FROM {$table} WHERE status = 'pending' AND next_at <= %s ORDER BY id LIMIT %d",
				current_time('mysql', true),
				self::BATCH
			),
			ARRAY_A
		);
		// asked (or the answer kept) on every run, events due or not: the e-mail take-over goes by it
		$types = $this->event_types();
		foreach ($rows as $row) {
			$this->send_one($row, $types);
		}
	}

	/**
	 * @param array                            $row   A row of the events table.
	 * @param array<string, list<string>>|null $types What commsync registers (null: unknown).
	 */
	private function send_one(array $row, ?array $types): void {
		$payload = json_decode((string) $row['payload'], true);
		$payload = is_array($payload) ? $payload : [];
		if (null !== $types && ! isset($types[$row['event']])) {
			$this->finish($row, 'skipped', 'commsync does not handle this event');
			return;
		}
		// Only the keys commsync registers: Ultimate Multisite adds its own (wu_version, …).
		$data = null === $types ? $payload : array_intersect_key($payload, array_flip($types[$row['event']]));
		unset($data['wu_version']);
		$response = $this->client->request(
			'POST',
			'/v1/events',
			['type' => $row['event'], 'data' => (object) $data, 'key' => $row['uuid']]
		);
		if ($response->accepted()) {
			$this->finish($row, 'sent', '');
		} elseif ($response->refused()) {
			$this->finish($row, 'refused', $response->error);
		} else {
			Commsync_Bridge_Retry::later(self::table(), $row, $response->error, 'event ' . $row['uuid']);
		}
	}

	private function finish(array $row, string $status, string $error): void {
		global $wpdb;
		$wpdb->update(
			self::table(),
			[
				'status'     => $status,
				'attempts'   => (int) $row['attempts'] + 1,
				'last_error' => '' === $error ? null : $error,
				'sent_at'    => 'sent' === $status ? current_time('mysql', true) : null,
			],
			['id' => (int) $row['id']]
		);
	}
}
