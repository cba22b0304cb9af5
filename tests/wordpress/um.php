<?php
// What an operator or a customer does in Ultimate Multisite, through the stand-in models.
use WP_Ultimo\Models\Customer;
use WP_Ultimo\Models\Membership;
use WP_Ultimo\Models\Product;

switch ($args[0]) {
	case 'customer': // ID EMAIL LOGIN FIRST LAST
		[, $id, $email, $login, $first, $last] = $args;
		$user = get_user_by('login', $login);
		$user_id = $user ? $user->ID : wp_insert_user(['user_login' => $login, 'user_email' => $email, 'user_pass' => wp_generate_password(), 'first_name' => $first, 'last_name' => $last, 'display_name' => "$first $last"]);
		if ($user) {
			wp_update_user(['ID' => $user_id, 'user_email' => $email, 'first_name' => $first, 'last_name' => $last, 'display_name' => "$first $last"]);
		}
		(new Customer(['id' => (int) $id, 'user_id' => (int) $user_id]))->save();
		break;
	case 'delete-customer': // ID
		wu_get_customer((int) $args[1])->delete();
		break;
	case 'product': // ID SLUG NAME
		(new Product(['id' => (int) $args[1], 'slug' => $args[2], 'name' => $args[3]]))->save();
		break;
	case 'membership': // ID CUSTOMER_ID PLAN_ID STATUS
		(new Membership(['id' => (int) $args[1], 'customer_id' => (int) $args[2], 'plan_id' => (int) $args[3], 'status' => $args[4]]))->save();
		break;
	case 'delete-membership': // ID
		$all = Membership::all('membership');
		(new Membership($all[(int) $args[1]]))->delete();
		break;
	case 'site': // PATH MEMBERSHIP_ID OWNER_LOGIN: a sub-site the customer's membership bought
		[, $path, $membership_id, $login] = $args;
		$owner   = get_user_by('login', $login);
		$blog_id = wpmu_create_blog(DOMAIN_CURRENT_SITE, "/{$path}/", ucfirst($path), $owner->ID);
		if (is_wp_error($blog_id)) {
			fwrite(STDERR, $blog_id->get_error_message() . "\n");
			exit(1);
		}
		$map             = get_site_option('um_standin_site_membership', []);
		$map[$blog_id]   = (int) $membership_id;
		update_site_option('um_standin_site_membership', $map);
		echo "site $blog_id\n";
		break;
	case 'password': // LOGIN PASSWORD
		$user = get_user_by('login', $args[1]);
		wp_set_password($args[2], $user->ID);
		break;
	case 'full-sync':
		$count = (new Commsync_Bridge_Sync(Commsync_Bridge_Client::from_config()))->full_sync();
		echo "noted $count\n";
		break;
	case 'sync': // one cron run of the sync; prints its table
		do_action(Commsync_Bridge_Sync::CRON);
		global $wpdb;
		$rows = $wpdb->get_results('SELECT kind, item, action, status, attempts, last_error FROM ' . Commsync_Bridge_Sync::table() . ' ORDER BY id', ARRAY_A);
		foreach ($rows as &$row) {
			$row['attempts'] = (int) $row['attempts'];
		}
		echo wp_json_encode($rows), "\n";
		break;
}
