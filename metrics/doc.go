// Package metrics exports Viaduct's counters and states to Prometheus.
//
// A Collector reads its sources when it is scraped and builds constant
// metrics from what it reads: the fast path's per-worker counters
// (fastpath.Engine.WorkerStats, which the workers keep as single-writer
// atomics, so nothing shared is written on the hot path and a scrape costs
// the workers nothing), the balancer's current table (states, weights,
// priorities, shares), the health checker's status (probe counters, RTT
// histograms) and the configuration reloads (Reloads). NewRegistry adds the
// Go runtime and process collectors; Handler serves a registry on /metrics.
//
//	col := metrics.New(metrics.Options{Engine: eng, Health: checker, Pool: eng.Pool(), Reloads: &reloads})
//	reg, err := metrics.NewRegistry(col)
//	mux.Handle("GET /metrics", metrics.Handler(reg, logger))
//
// # Metrics
//
// Fast path (sums over workers; every label value is exported from the start,
// zero or not):
//
//	viaduct_requests_received_total{method}         counter  requests parsed, by method (INVITE, ACK, ..., other)
//	viaduct_requests_forwarded_total                counter  requests sent on to a next hop
//	viaduct_responses_received_total                counter  responses parsed
//	viaduct_responses_forwarded_total{class}        counter  responses relayed, by class 1xx..6xx
//	viaduct_local_replies_total{code}               counter  responses Viaduct generated: 200 (OPTIONS to Viaduct), 400, 482, 483, 503, 505, 513
//	viaduct_local_responses_received_total          counter  responses addressed to Viaduct itself (probe replies)
//	viaduct_messages_dropped_total{reason}          counter  messages not forwarded: parse_error, forged_response, too_big, loop,
//	                                                         too_many_hops, no_upstream, unroutable_response, send_error,
//	                                                         next_hop_pending (see fastpath.DropReason)
//	viaduct_datagrams_received_total                counter  UDP datagrams received
//	viaduct_datagrams_sent_total                    counter  UDP datagrams sent
//	viaduct_received_bytes_total                    counter  UDP payload bytes received
//	viaduct_sent_bytes_total                        counter  UDP payload bytes sent
//	viaduct_kernel_receive_drops_total              counter  datagrams the kernel dropped on Viaduct's sockets (receive buffer full)
//	viaduct_worker_datagrams_received_total{listen,worker}  counter  datagrams per worker socket (SO_REUSEPORT spread)
//	viaduct_balance_key_fallbacks_total             counter  balanced requests lacking their method's key, hashed on Call-ID
//	viaduct_balance_dialog_routed_total             counter  in-dialog requests sent to the upstream their next hop names
//	viaduct_drop_log_lines_suppressed_total         counter  debug log lines on drops left out by their rate limit (fastpath.DropLogRate)
//
// Upstreams, from the balancer's table (every configured target, disabled
// ones too, from the start):
//
//	viaduct_upstream_info{upstream,address,transport}  gauge    1 per configured target
//	viaduct_upstream_up{upstream}                      gauge    1 up, 0 down (the health the balancer acts on)
//	viaduct_upstream_admin_state{upstream,state}       gauge    1 for the current state of enabled, draining, disabled
//	viaduct_upstream_weight{upstream}                  gauge    configured weight
//	viaduct_upstream_priority{upstream}                gauge    configured priority group (lower preferred)
//	viaduct_upstream_selected{upstream,requests}       gauge    1 when chosen for new_dialog / in_dialog requests
//	viaduct_upstream_share_ratio{upstream}             gauge    fraction of new dialogs assigned to it
//	viaduct_upstream_requests_forwarded_total{upstream} counter requests sent to it (when the engine counts them)
//	viaduct_upstream_responses_total{upstream,class}   counter  responses relayed from it (by source address), by class 1xx..6xx
//	viaduct_pool_selectable_targets{requests}          gauge    targets selectable for new_dialog / in_dialog requests (0: 503)
//	viaduct_pool_table_builds_total                    counter  lookup tables published (state or config changes)
//
// Health checks:
//
//	viaduct_upstream_probes_total{upstream}                      counter    probes sent (retransmissions not counted)
//	viaduct_upstream_probe_failures_total{upstream,cause}        counter    failed probes: timeout, bad_code, send_error
//	viaduct_upstream_passive_503_bursts_total{upstream}          counter    503 bursts that marked the target down
//	viaduct_upstream_probe_rtt_seconds{upstream}                 histogram  probe round-trip time (buckets 0.25 ms .. 5 s)
//	viaduct_upstream_probe_rtt_smoothed_seconds{upstream}        gauge      smoothed RTT (EWMA, 1/8)
//	viaduct_upstream_health_last_change_timestamp_seconds{upstream} gauge   when the health last changed (Unix time)
//	viaduct_health_probe_replies_dropped_total                   counter    probe replies the checker could not queue
//
// Configuration and build:
//
//	viaduct_config_reloads_total{result}                   counter  reloads by result: success, failure
//	viaduct_config_last_reload_successful                  gauge    1 when the last load attempt succeeded
//	viaduct_config_last_reload_success_timestamp_seconds   gauge    when the configuration in use was loaded
//	viaduct_config_info{hash}                              gauge    1; hash: first 16 hex digits of the file's SHA-256
//	viaduct_build_info{version,revision,goversion}         gauge    1
//
// plus the go_* and process_* metrics of client_golang's collectors.
//
// The upstream label is the target's ID (default "udp:ADDR:PORT"), which
// stays the same across reloads and address changes.
package metrics
