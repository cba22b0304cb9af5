<?php
// Clears what the Ultimate Multisite stand-in recorded.
delete_site_option('um_standin_sent');
echo "forgotten\n";
