<?php
/**
 * php run.php SITE_DIR DOMAIN SCRIPT [ARGS…]: WordPress loaded for DOMAIN (a request to the
 * network's main site, as WP-Cron's would be), then SCRIPT run with $args.
 */

declare(strict_types=1);

[$self, $site, $domain, $script] = array_slice($argv, 0, 4);
$args = array_slice($argv, 4);
$_SERVER['HTTP_HOST']   = $domain;
$_SERVER['SERVER_NAME'] = $domain;
$_SERVER['REQUEST_URI'] = '/';
require $site . '/wp-load.php';
require __DIR__ . '/um-fixtures.php';
require $script;
