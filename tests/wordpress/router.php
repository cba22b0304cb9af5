<?php
/**
 * `php -S` router for a sub-directory multisite: what WordPress's .htaccess rules do under Apache
 * (a site's prefix stripped from wp-admin, wp-includes, wp-content and *.php paths; everything
 * else to index.php).
 */

$root = $_SERVER['DOCUMENT_ROOT'];
$path = urldecode((string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH));
$rel  = $path;
if (preg_match('#^/[_0-9a-zA-Z-]+(/wp-(?:admin|includes|content)(?:/.*)?)$#', $path, $m) || preg_match('#^/[_0-9a-zA-Z-]+(/[^/]+\.php)$#', $path, $m)) {
	$rel = $m[1];
}
$file = $root . $rel;
if (is_dir($file)) {
	$file = rtrim($file, '/') . '/index.php';
}
if (is_file($file) && ! str_ends_with($file, '.php')) {
	if ($rel === $path) {
		return false; // the built-in server sends it
	}
	$types = ['css' => 'text/css', 'js' => 'application/javascript', 'png' => 'image/png', 'svg' => 'image/svg+xml', 'woff' => 'font/woff', 'woff2' => 'font/woff2', 'gif' => 'image/gif'];
	header('Content-Type: ' . ($types[pathinfo($file, PATHINFO_EXTENSION)] ?? 'application/octet-stream'));
	readfile($file);
	return true;
}
if (! is_file($file)) {
	$file = $root . '/index.php';
}
$_SERVER['SCRIPT_FILENAME'] = $file;
$_SERVER['SCRIPT_NAME']     = str_ends_with($path, '.php') ? $path : rtrim($path, '/') . '/' . basename($file);
$_SERVER['PHP_SELF']        = $_SERVER['SCRIPT_NAME'];
chdir(dirname($file));
require $file;
