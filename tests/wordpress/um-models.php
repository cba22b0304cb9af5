<?php
/**
 * Stand-ins for Ultimate Multisite's models (a must-use plugin of the test network), where the
 * bridge meets them: the getters it calls and the hooks `Base_Model::save()` and `delete()` fire —
 * `do_action("wu_{$this->model}_post_save", $data, $this, $new)` and
 * `do_action("wu_{$this->model}_post_delete", $result, $this)` (inc/models/class-base-model.php:624, :663);
 * `Customer::get_email_address()`, `get_username()`, `get_display_name()` read the WordPress user
 * (inc/models/class-customer.php:304, :287, :231); `Membership::get_plan_id()` (inc/models/class-membership.php:505);
 * `Product::get_slug()`, `get_name()` (inc/models/class-product.php:453, :473); the query functions
 * `wu_get_customer()`, `wu_get_customers()`, `wu_get_product($id_or_slug)`, `wu_get_products()`,
 * `wu_get_memberships()`, `wu_get_membership()`, `wu_get_current_site()` (inc/functions/customer.php:22, :62, product.php:22, :39, membership.php:25, :65,
 * site.php:18); a
 * site's membership and customer, `Site::get_membership()` and `get_customer_id()`
 * (inc/models/class-site.php:1037, :921) — Multisite-Ultimate/ultimate-multisite at c6d398be. Records are
 * kept in site options, so each PHP process of a test sees the same network.
 */

declare(strict_types=1);

namespace WP_Ultimo\Models {

	abstract class Standin_Model {
		protected string $model = '';

		public function __construct(public array $data) {
		}

		public function get_id(): int {
			return (int) $this->data['id'];
		}

		public static function all(string $model): array {
			return get_site_option("um_standin_{$model}", []);
		}

		public function save(): bool {
			$all = self::all($this->model);
			$new = ! isset($all[$this->get_id()]);
			$all[$this->get_id()] = $this->data;
			update_site_option("um_standin_{$this->model}", $all);
			do_action("wu_{$this->model}_post_save", $this->data, $this, $new);
			return true;
		}

		public function delete(): bool {
			$all = self::all($this->model);
			unset($all[$this->get_id()]);
			update_site_option("um_standin_{$this->model}", $all);
			do_action("wu_{$this->model}_post_delete", true, $this);
			return true;
		}
	}

	class Customer extends Standin_Model {
		protected string $model = 'customer';

		public function get_user_id(): int {
			return (int) $this->data['user_id'];
		}

		public function get_user() {
			return get_user_by('id', $this->get_user_id());
		}

		public function get_email_address(): string {
			$user = $this->get_user();
			return $user ? $user->user_email : 'none';
		}

		public function get_username(): string {
			$user = $this->get_user();
			return $user ? $user->user_login : 'none';
		}

		public function get_display_name(): string {
			$user = $this->get_user();
			return $user ? $user->display_name : 'User Deleted';
		}
	}

	class Product extends Standin_Model {
		protected string $model = 'product';

		public function get_slug(): string {
			return (string) $this->data['slug'];
		}

		public function get_name(): string {
			return (string) $this->data['name'];
		}
	}

	/** A sub-site: its membership (blog meta in Ultimate Multisite; a site option here). */
	class Site {
		public function __construct(private int $blog_id) {
		}

		public function get_membership_id(): int {
			return (int) (get_site_option('um_standin_site_membership', [])[$this->blog_id] ?? 0);
		}

		public function get_membership() {
			return wu_get_membership($this->get_membership_id());
		}

		public function get_customer_id(): int {
			$membership = $this->get_membership();
			return $membership ? $membership->get_customer_id() : 0;
		}
	}

	class Membership extends Standin_Model {
		protected string $model = 'membership';

		public function get_customer_id(): int {
			return (int) $this->data['customer_id'];
		}

		public function get_plan_id(): int {
			return (int) $this->data['plan_id'];
		}

		public function get_status(): string {
			return (string) $this->data['status'];
		}
	}
}

namespace {

	use WP_Ultimo\Models\Customer;
	use WP_Ultimo\Models\Membership;
	use WP_Ultimo\Models\Product;

	function commsync_standin_page(array $records, array $query): array {
		$number = (int) ($query['number'] ?? 0);
		$offset = (int) ($query['offset'] ?? 0);
		return array_values($number > 0 ? array_slice($records, $offset, $number) : $records);
	}

	function wu_get_customer($id) {
		$all = Customer::all('customer');
		return isset($all[(int) $id]) ? new Customer($all[(int) $id]) : false;
	}

	function wu_get_customers($query = []) {
		return commsync_standin_page(array_map(fn ($d) => new Customer($d), Customer::all('customer')), $query);
	}

	function wu_get_product($id_or_slug) {
		foreach (Product::all('product') as $data) {
			if ((string) $data['id'] === (string) $id_or_slug || $data['slug'] === $id_or_slug) {
				return new Product($data);
			}
		}
		return false;
	}

	function wu_get_products($query = []) {
		return commsync_standin_page(array_map(fn ($d) => new Product($d), Product::all('product')), $query);
	}

	function wu_get_current_site() {
		return new \WP_Ultimo\Models\Site(get_current_blog_id());
	}

	function wu_get_membership($id) {
		$all = Membership::all('membership');
		return isset($all[(int) $id]) ? new Membership($all[(int) $id]) : false;
	}

	function wu_get_memberships($query = []) {
		$found = [];
		foreach (Membership::all('membership') as $data) {
			if (! isset($query['customer_id']) || (int) $data['customer_id'] === (int) $query['customer_id']) {
				$found[] = new Membership($data);
			}
		}
		return commsync_standin_page($found, $query);
	}
}
