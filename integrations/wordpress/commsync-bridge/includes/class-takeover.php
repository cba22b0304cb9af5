<?php
/**
 * Each system email sent once: by commsync for the events it covers, by Ultimate Multisite for
 * the others.
 *
 * Ultimate Multisite sends its system emails from `Email_Manager::send_system_email()`, which its
 * `init()` hooks with `add_action('wu_event', [$this, 'send_system_email'], 10, 2)`
 * (inc/managers/class-email-manager.php:76 and :98, Multisite-Ultimate/ultimate-multisite at c6d398be; the manager is a
 * singleton, `Email_Manager::get_instance()`: :33, inc/traits/trait-singleton.php:31). Once the bridge is connected, this class puts a
 * filter in its place at the same priority: an event commsync registers is left to commsync
 * (the bridge forwards it), any other still reaches Ultimate Multisite's handler. On by default;
 * a checkbox of the settings page, or `define('COMMSYNC_BRIDGE_TAKE_OVER_EMAILS', false)` in
 * wp-config.php, leaves Ultimate Multisite's sending alone. Until the bridge has reached commsync once (it does not know yet
 * which events commsync covers), Ultimate Multisite keeps sending everything.
 *
 * @package CommsyncBridge
 */

declare(strict_types=1);

if (! defined('ABSPATH')) {
	exit;
}

final class Commsync_Bridge_Takeover {
	public const UM_EMAILS = '\\WP_Ultimo\\Managers\\Email_Manager';

	public function __construct(
		private Commsync_Bridge_Client $client,
		private Commsync_Bridge_Events $events
	) {
	}

	public const OPTION = 'commsync_bridge_take_over'; // the settings page's checkbox: '1' or '0'

	/** wp-config.php's COMMSYNC_BRIDGE_TAKE_OVER_EMAILS when defined, else the settings page (on by default). */
	public static function enabled(): bool {
		if (defined('COMMSYNC_BRIDGE_TAKE_OVER_EMAILS')) {
			return (bool) constant('COMMSYNC_BRIDGE_TAKE_OVER_EMAILS');
		}
		return '0' !== (string) get_site_option(self::OPTION, '1');
	}

	public function register(): void {
		// Late on `init`: Ultimate Multisite's managers have hooked themselves by then.
		add_action('init', [$this, 'take_over'], 100);
	}

	public function take_over(): void {
		$class = self::UM_EMAILS;
		if (! self::enabled() || ! $this->client->configured() || ! class_exists($class) || ! method_exists($class, 'get_instance')) {
			return;
		}
		$manager  = $class::get_instance();
		$original = [$manager, 'send_system_email'];
		$priority = has_action('wu_event', $original);
		if (false === $priority) {
			return;
		}
		remove_action('wu_event', $original, $priority);
		$events = $this->events;
		add_action(
			'wu_event',
			static function ($slug, $payload) use ($manager, $events): void {
				$covered = $events->known_types();
				if (null !== $covered && isset($covered[(string) $slug])) {
					return; // commsync sends this event's emails
				}
				$manager->send_system_email($slug, $payload);
			},
			$priority,
			2
		);
	}
}
