<?php
/**
 * When a row of the bridge's queues (events, sync) is tried again after commsync could not take
 * it: one backoff for both, never giving up.
 *
 * @package CommsyncBridge
 */

declare(strict_types=1);

if (! defined('ABSPATH')) {
	exit;
}

final class Commsync_Bridge_Retry {
	public const BACKOFF = [60, 300, 900, 3600, 14400]; // seconds after the 1st, 2nd, … failure

	/**
	 * Counts the failed attempt of `$row` in `$table`, keeps the error and sets when it is due
	 * again; logs one line naming `$what`.
	 */
	public static function later(string $table, array $row, string $error, string $what): void {
		global $wpdb;
		$attempts = (int) $row['attempts'] + 1;
		$wait     = self::BACKOFF[min($attempts, count(self::BACKOFF)) - 1];
		$wpdb->update(
			$table,
			['attempts' => $attempts, 'last_error' => $error, 'next_at' => gmdate('Y-m-d H:i:s', time() + $wait)],
			['id' => (int) $row['id']]
		);
		error_log(sprintf('commsync bridge: %s not sent yet (%s); retrying in %d s', $what, $error, $wait));
	}
}
