"""A real WordPress multisite for the bridge's tests: Debian's WordPress files, PHP's CLI and
MariaDB (127.0.0.1:3306, root without a password), installed into a temporary directory with a
throwaway database. Ultimate Multisite itself is not installed (its Composer dependencies are not
available): tests/wordpress/um-fixtures.php stands in for it where it would act.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "integrations" / "wordpress" / "commsync-bridge"
SCRIPTS = Path(__file__).resolve().parent / "wordpress"
CACHE = Path(tempfile.gettempdir()) / "commsync-tests" / "wordpress-deb"
DOMAIN = "127.0.0.2"  # the network's address: port 80 of a loopback address of its own

WP_CONFIG = """<?php
define('DB_NAME', '{db}');
define('DB_USER', 'root');
define('DB_PASSWORD', '');
define('DB_HOST', '127.0.0.1:3306');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
$table_prefix = 'wp_';
{salts}
define('WP_ALLOW_MULTISITE', true);
define('DISABLE_WP_CRON', true);  // the tests run the bridge's cron hook themselves
define('CONCATENATE_SCRIPTS', false);  // Debian's files link a few scripts to other packages
// No traffic beyond loopback: WordPress's update checks and dashboard news would wait on it.
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('WP_ACCESSIBLE_HOSTS', '127.0.0.1,127.0.0.2,localhost');
if (file_exists(__DIR__ . '/wp-config-network.php')) {{ require __DIR__ . '/wp-config-network.php'; }}
if (file_exists(__DIR__ . '/wp-config-commsync.php')) {{ require __DIR__ . '/wp-config-commsync.php'; }}
if (!defined('ABSPATH')) {{ define('ABSPATH', __DIR__ . '/'); }}
require_once ABSPATH . 'wp-settings.php';
"""
NO_MAIL = "<?php\n// The test network sends no mail of its own.\nadd_filter('pre_wp_mail', '__return_false');\n"


def wordpress_source() -> Path:
    """WordPress's files from Debian's `wordpress` package, unpacked (installing the package
    would pull in Apache): fetched with `apt-get download` once, then cached."""
    tree = CACHE / "usr" / "share" / "wordpress"
    if (tree / "wp-settings.php").exists():
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fetch = ["apt-get", "download", "wordpress"]
        if subprocess.run(fetch, cwd=tmp, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
            subprocess.run(fetch, cwd=tmp, check=True, capture_output=True)
        [deb] = Path(tmp).glob("wordpress_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(CACHE)], check=True)
    return tree


def _mysql(sql: str) -> None:
    subprocess.run(
        ["mysql", "-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql],
        check=True,
        capture_output=True,
        text=True,
    )


@dataclass
class WordPress:
    """One installed network: `site` is its directory, `db` its database."""

    site: Path
    db: str

    def php(self, script: str, *args: str) -> str:
        """Run tests/wordpress/SCRIPT inside WordPress (loaded as for the main site)."""
        done = subprocess.run(
            ["php", str(SCRIPTS / "run.php"), str(self.site), DOMAIN, str(SCRIPTS / script), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def connect(self, url: str | None, key: str | None, *, take_over: bool = True) -> None:
        """Where the bridge finds commsync (wp-config constants), or not configured (None)."""
        config = self.site / "wp-config-commsync.php"
        if url is None or key is None:
            config.unlink(missing_ok=True)
            return
        config.write_text(
            f"<?php\ndefine('COMMSYNC_URL', {url!r});\ndefine('COMMSYNC_API_KEY', {key!r});\n"
            + ("" if take_over else "define('COMMSYNC_BRIDGE_TAKE_OVER_EMAILS', false);\n")
        )

    @contextmanager
    def serve(self) -> Iterator[str]:
        """The network over HTTP on port 80 of its own loopback address (WordPress refuses a
        multisite on another port), by PHP's built-in server with a router doing what
        WordPress's .htaccess rules do; yields its URL."""
        try:  # a server left running would answer instead of this network's
            socket.create_connection((DOMAIN, 80), 1).close()
            raise AssertionError(f"something already listens on {DOMAIN}:80")
        except OSError:
            pass
        server = subprocess.Popen(
            ["php", "-S", f"{DOMAIN}:80", "-t", str(self.site), str(SCRIPTS / "router.php")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # several requests at once: a dashboard loads its assets while admin-ajax answers
            env={**os.environ, "PHP_CLI_SERVER_WORKERS": "4"},
            start_new_session=True,  # its workers are its children: stopped with it, as a group
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection((DOMAIN, 80), 1).close()
                    break
                except OSError:
                    assert server.poll() is None, "php -S did not start"
                    assert time.monotonic() < deadline, "php -S did not listen"
                    time.sleep(0.1)
            yield f"http://{DOMAIN}"
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)

    def drop(self) -> None:
        _mysql(f"DROP DATABASE IF EXISTS `{self.db}`")


def install(parent: Path) -> WordPress:
    """A fresh multisite under `parent`, the bridge network-activated."""
    site = parent / "wordpress"
    shutil.copytree(wordpress_source(), site, symlinks=True)
    db = f"wp_{uuid.uuid4().hex[:12]}"
    _mysql(f"CREATE DATABASE `{db}`")
    salts = "\n".join(
        f"define('{name}', '{uuid.uuid4().hex}');"
        for name in (
            "AUTH_KEY",
            "SECURE_AUTH_KEY",
            "LOGGED_IN_KEY",
            "NONCE_KEY",
            "AUTH_SALT",
            "SECURE_AUTH_SALT",
            "LOGGED_IN_SALT",
            "NONCE_SALT",
        )
    )
    (site / "wp-config.php").write_text(WP_CONFIG.format(db=db, salts=salts))
    (site / "wp-content" / "mu-plugins").mkdir(exist_ok=True)
    (site / "wp-content" / "mu-plugins" / "no-mail.php").write_text(NO_MAIL)
    shutil.copy(SCRIPTS / "um-email-manager.php", site / "wp-content" / "mu-plugins")
    shutil.copy(SCRIPTS / "um-models.php", site / "wp-content" / "mu-plugins")
    shutil.copytree(PLUGIN, site / "wp-content" / "plugins" / "commsync-bridge")
    wordpress = WordPress(site, db)
    done = subprocess.run(
        ["php", str(SCRIPTS / "install.php"), str(site), DOMAIN],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "installed" in done.stdout, done.stdout + done.stderr
    assert wordpress.php("activate.php").strip() == "active"
    return wordpress
