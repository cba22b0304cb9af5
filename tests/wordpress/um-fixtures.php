<?php
/**
 * Stand-ins for Ultimate Multisite where it would act (it cannot be installed here: its Composer
 * dependencies are not available). Each payload is shaped as Ultimate Multisite builds it.
 *
 * payment_received: `Payment_Manager::handle_payment_success()` merges
 * `wu_generate_event_payload('payment', $payment)`, `('membership', $membership)` and
 * `('customer', $membership->get_customer())`, then calls `wu_do_event('payment_received', …)`
 * (inc/managers/class-payment-manager.php:106-114); `Event_Manager::do_event()` adds `wu_version`
 * and fires `do_action('wu_event', $slug, $payload)` (inc/managers/class-event-manager.php:258-278)
 * — Multisite-Ultimate/ultimate-multisite at c6d398be.
 */

declare(strict_types=1);

/** The payload of payment_received for one customer and payment (reference code). */
function commsync_test_payment_received(int $customer_id, string $email, string $reference): array {
	return [
		// wu_generate_event_payload('payment', $payment)
		'payment_id'             => 7001,
		'payment_status'         => 'completed',
		'payment_reference_code' => $reference,
		'payment_subtotal'       => '€34.00',
		'payment_tax_total'      => '€7.50',
		'payment_total'          => '€41.50',
		'payment_currency'       => 'EUR',
		'payment_product_names'  => 'Pro',
		'payment_date_created'   => '2026-11-29 10:00:00',
		'payment_gateway'        => 'stripe',
		'payment_invoice_url'    => 'https://network.example/invoice/' . $reference,
		'payment_manage_url'     => 'https://network.example/wp-admin/network/payments/' . $reference,
		// wu_generate_event_payload('membership', $membership)
		'membership_id'              => 3001,
		'membership_status'          => 'active',
		'membership_reference_code'  => 'MEM-3001',
		'membership_initial_amount'  => '€41.50',
		'membership_amount'          => '€41.50',
		'membership_currency'        => 'EUR',
		'membership_description'     => 'Pro, monthly',
		'membership_gateway'         => 'stripe',
		'membership_date_expiration' => '2026-12-29 10:00:00',
		'membership_manage_url'      => 'https://network.example/wp-admin/network/memberships/3001',
		// wu_generate_event_payload('customer', $customer)
		'customer_id'                 => $customer_id,
		'customer_name'               => 'Ada Lovelace',
		'customer_user_id'            => 12,
		'customer_user_email'         => $email,
		'customer_email_verification' => 'verified',
		'customer_avatar'             => 'https://network.example/avatar/12.png',
		'customer_billing_address'    => '12 St James\'s Square, London',
		'customer_manage_url'         => 'https://network.example/wp-admin/network/customers/' . $customer_id,
		// Event_Manager::do_event()
		'wu_version'                  => '2.3.4',
	];
}
