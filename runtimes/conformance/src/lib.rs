//! The conformance suite: every delivery rule and every operation, checked on any
//! [`Backend`](ai_os_kernel::backend::Backend).
//!
//! Written once and run by the main crate's tests and by each `runtimes/<name>` crate under its
//! own executor. [`conformance_tests!`] expands to one `#[test]` per check:
//!
//! ```text
//! ai_os_kernel_conformance::conformance_tests!(
//!     make: || std::sync::Arc::new(ai_os_kernel::backend::BlockingBackend::new()),
//!     block_on: |f| futures::executor::block_on(f),
//! );
//! ```
//!
//! Every check runs on a thread of its own and fails if it takes longer than
//! [`support::CHECK_LIMIT`]: a hang is a failure, not a stuck CI.

pub mod checks;
pub mod fuzz;
pub mod support;

/// Expands to one `#[test]` per check of the suite, on backends made by `make` (a `fn() ->
/// Arc<dyn Backend>`), with the async checks driven by `block_on` (a `fn(BoxFuture)`).
#[macro_export]
macro_rules! conformance_tests {
    (make: $make:expr, block_on: $block_on:expr $(,)?) => {
        $crate::__sync_checks!($make;
            ring_sizes, submit_creates_ring, pid_mismatch_refused, nop_roundtrip,
            exactly_once, future_owns_completion, dropped_future_is_discarded, detach_hands_to_cq,
            wait_takes_out_of_order, backpressure_sq_full, backpressure_cq_full,
            batch_all_or_nothing, wait_fails_fast, wait_timeout, destroy_wakes_everyone,
            cancel_ops, long_queue_of_instant_ops_keeps_the_stack_flat, fairness_under_flood, stats_consistent_under_concurrency,
            file_ops_roundtrip, truncate_and_datasync, fallocate_allocates_and_punches, fstat_reports_metadata, vectored_reads_and_writes, copy_range_copies, timeouts_complete_in_time, deadlines_time_out, linked_chains, short_read_and_eof, open_create_mode, fds_are_per_process,
            lseek_whence, concurrent_read_at, dropped_open_closes_fd, panic_in_op_is_eio, drop_storm, opened_files_are_close_on_exec,
            default_policy_denies, rooted_paths_resolve_beneath, rooted_escapes_refused,
            read_only_refuses_writes, policy_limits,
            path_ops_roundtrip, read_dir_pages, rename_across_file_systems, read_only_refuses_path_changes, hostile_path_ops_table, unrestricted_policy, bad_policy_root_refused, hostile_paths_table,
            destroy_closes_descriptors, registry_and_handler_share_descriptors, stats_for_counts_and_latencies,
            tcp_echo_many_connections, tcp_echo_ipv6, udp_ping_pong, connection_refused, peer_reset,
            partial_sends_and_large_messages, parked_waits_hold_no_thread,
            cancelled_accept_stops_and_leaks_nothing, submitter_thread_may_exit, dropping_the_manager_ends_waiting_ops, network_policy_enforced, bad_socket_ops, peer_address_and_shutdown,
            sockets_are_close_on_exec, owned_buffers_on_files, owned_buffers_on_sockets, owned_buffers_come_back_unrun,
            fixed_buffers_read_and_write_in_place, fixed_buffers_come_back_however_they_end, fixed_pools_keep_their_limits,
            multishot_accept_streams_connections, multishot_accept_is_bounded_and_leaves_nothing,
            multishot_accept_stops_at_the_descriptor_limit, multishot_accept_outlives_a_reset_connection,
            multishot_recv_streams_data, multishot_recv_counts_its_buffers, multishot_recv_many_at_once,
        );
        $crate::__async_checks!($make, $block_on;
            futures_resolve, stream_delivers_then_ends, woken_from_another_thread, async_echo_concurrent,
            handles_files, handles_fixed_buffers, handles_sockets, handles_write_in_the_background,
        );
        $crate::__isolation_checks!($make, $block_on);
        $crate::__hostile_checks!($make, $block_on);
        $crate::__starvation_checks!($make, $block_on);
        $crate::__qos_checks!($make, $block_on);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sync_checks {
    ($make:expr; $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let make: $crate::support::MakeBackend = $make;
            $crate::support::within($crate::support::CHECK_LIMIT, stringify!($name), move || {
                $crate::checks::$name(make)
            });
        }
    )*};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __async_checks {
    ($make:expr, $block_on:expr; $($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let make: $crate::support::MakeBackend = $make;
            let block_on: $crate::support::BlockOn = $block_on;
            $crate::support::within($crate::support::CHECK_LIMIT, stringify!($name), move || {
                block_on(Box::pin($crate::checks::$name(make)))
            });
        }
    )*};
}
