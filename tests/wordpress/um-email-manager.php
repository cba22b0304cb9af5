<?php
/**
 * A stand-in for Ultimate Multisite's `WP_Ultimo\Managers\Email_Manager`, installed as a
 * must-use plugin in the test network: a singleton whose `init()` hooks
 * `add_action('wu_event', [$this, 'send_system_email'], 10, 2)`, as the real one does
 * (inc/managers/class-email-manager.php:76, Multisite-Ultimate/ultimate-multisite at c6d398be). Instead of
 * sending, it records each event it was asked to handle in the site option `um_standin_sent`.
 */

declare(strict_types=1);

namespace WP_Ultimo\Managers;

class Email_Manager {
	private static ?Email_Manager $instance = null;

	public static function get_instance(): self {
		return self::$instance ??= new self();
	}

	public function init(): void {
		add_action('wu_event', [$this, 'send_system_email'], 10, 2);
	}

	public function send_system_email($slug, $payload): void {
		$sent   = get_site_option('um_standin_sent', []);
		$sent[] = (string) $slug;
		update_site_option('um_standin_sent', $sent);
	}
}

// Ultimate Multisite initialises its managers while plugins load.
add_action('plugins_loaded', static function (): void {
	Email_Manager::get_instance()->init();
}, 5);
