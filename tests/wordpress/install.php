<?php
/**
 * php install.php SITE_DIR DOMAIN: a WordPress multisite (sub-directories) in SITE_DIR, whose
 * wp-config.php is written already; the network's main site answers at http://DOMAIN/.
 * What WP-CLI's `core multisite-install` does, with WordPress's own functions (WP-CLI is not in
 * the registries this project may use).
 */

declare(strict_types=1);

[$self, $site, $domain] = $argv;
$_SERVER['HTTP_HOST']   = $domain;
$_SERVER['SERVER_NAME'] = $domain;
$_SERVER['REQUEST_URI'] = '/';
define('WP_INSTALLING', true);
require $site . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/network.php';

wp_install('Test Network', 'admin', 'admin@network.example', true, '', 'admin-password-0123');
update_option('siteurl', "http://{$domain}");
update_option('home', "http://{$domain}");
foreach ($wpdb->tables('ms_global') as $table => $prefixed) {
	$wpdb->$table = $prefixed;
}
install_network();
$result = populate_network(1, $domain, 'admin@network.example', 'Test Network', '/', false);
if (is_wp_error($result)) {
	fwrite(STDERR, $result->get_error_message() . "\n");
	exit(1);
}
file_put_contents(
	$site . '/wp-config-network.php',
	"<?php\ndefine('MULTISITE', true);\ndefine('SUBDOMAIN_INSTALL', false);\n"
	. "define('DOMAIN_CURRENT_SITE', '{$domain}');\ndefine('PATH_CURRENT_SITE', '/');\n"
	. "define('SITE_ID_CURRENT_SITE', 1);\ndefine('BLOG_ID_CURRENT_SITE', 1);\n"
);
echo "installed\n";
