//! RabbitMQ (lapin) job transport for partway.
//!
//! This crate moves **job ids**, nothing else: a [`JobMessage`] is `{"jobId": "<uuid>", "kind":
//! "<kind>"}` (JSON, camelCase). The database is the source of truth; the caller (the outbox
//! relay on the publishing side, the worker on the consuming side) wires this transport to it.
//! It does not depend on `partway-core`.
//!
//! # Delivery guarantees ("nothing is lost", DESIGN.md §1)
//!
//! * [`AmqpQueue::publish`] publishes a persistent message with the `mandatory` flag on a channel
//!   in publisher-confirm mode and returns `Ok` only once the broker has confirmed it (an
//!   unroutable message, a nack, a timeout or a closed connection is an `Err`; the outbox row stays
//!   and is retried later).
//! * [`AmqpQueue::consume_with_info`] acks a delivery only after the handler has returned
//!   [`Disposition::Ack`], i.e. after the job's effect is committed. [`Disposition::Retry`]
//!   republishes the message (with confirm) to the delay tier whose TTL is the smallest one
//!   `>=` the requested delay, then acks; when the TTL expires the broker dead-letters the message
//!   back to its kind's work queue. [`Disposition::Park`] republishes it (with confirm) to the
//!   parking queue with the reason in the `x-partway-park-reason` header, then acks. If the
//!   republish fails the delivery is nacked with requeue, so it is handled again (handlers are
//!   idempotent). A handler that panics gets its delivery nacked with requeue; a worker that dies
//!   leaves its deliveries unacked and the broker redelivers them to another consumer.
//! * The work queues are quorum queues with a delivery limit ([`DELIVERY_LIMIT`]): a message
//!   that keeps crashing its handler (requeued again and again) is dead-lettered (at-least-once
//!   strategy) to the parking queue instead of looping forever.
//!
//! # Topology (all durable, declared idempotently by `connect` and on every reconnect)
//!
//! | object | kind | purpose |
//! |---|---|---|
//! | `partway.jobs` | direct exchange | routing key = job kind |
//! | `partway.jobs.<kind>` | quorum queue, bound to `partway.jobs` with `<kind>` | work queue per kind |
//! | `partway.delay.<n>s` (n = 1, 2, 4, 8, 16, 32, 64, 128, 300) | fanout exchange + classic queue of the same name | delay tier: `x-message-ttl` = n s, `x-dead-letter-exchange` = `partway.jobs` |
//! | `partway.parking` | quorum queue (default exchange) | parked messages, reason in a header |
//!
//! A delayed message is published to the tier's *fanout exchange* with the job kind as routing
//! key: dead-lettering keeps the original routing key, so the expired message goes back through
//! `partway.jobs` to its kind's work queue. (Publishing straight to the tier queue through the
//! default exchange would make the queue name the routing key, and the expired message would be
//! unroutable.) Each tier has a single TTL, so messages expire in FIFO order at the queue head.
//!
//! [`AmqpQueue::connect_with_prefix`] prefixes every exchange and queue name (tests use
//! `test-<uuid>.`); production uses no prefix.
//!
//! # Connections
//!
//! The publishing side keeps one connection with one confirm-mode channel; when it is gone,
//! `publish` reconnects lazily (one attempt, bounded by [`CONNECT_TIMEOUT`]). Each `consume_with_info`
//! call uses its own connection (so publisher flow control never blocks acks) and reconnects
//! with exponential backoff (capped at [`RECONNECT_BACKOFF_MAX`]) until shutdown. A heartbeat of
//! [`DEFAULT_HEARTBEAT_SECS`] seconds is requested unless the URL sets `?heartbeat=`.
//!
//! # Prefetch
//!
//! `consume_with_info(prefetch, ..)` sets a per-consumer QoS (`global = false`; quorum queues do not
//! support global QoS): every kind's work queue has at most `prefetch` unacked deliveries in
//! this consumer, so at most `5 × prefetch` handlers run at once.
//!
//! # Secrets
//!
//! Errors and logs never contain the URL or its password (the endpoint is reported as
//! `host:port`, and every broker/library message is scrubbed of the password).
//!
//! # Modules
//!
//! * `connection`: the [`AmqpQueue`] handle, connecting, readiness, closing, [`AmqpError`] and
//!   password scrubbing.
//! * `topology`: the names ([`Topology`], [`KINDS`], [`DELAY_TIERS_SECS`]), declaring them, queue
//!   depths and deleting a topology.
//! * `publisher`: the confirm-mode publishing session and [`AmqpQueue::publish`].
//! * `consumer`: [`AmqpQueue::consume_with_info`], [`Disposition`], [`DeliveryInfo`], and how a
//!   delivery is handled and settled (ack, retry, park, requeue).
//! * `events`: [`AmqpQueue::publish_event`], events for applications on the topic exchange.
//! * `message`: [`JobMessage`], its parsing, and the properties and headers it travels with.

mod connection;
mod consumer;
mod events;
mod message;
mod publisher;
mod topology;

pub use connection::{AmqpError, AmqpQueue, CONNECT_TIMEOUT, DEFAULT_HEARTBEAT_SECS};
pub use consumer::{DeliveryInfo, Disposition, RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN};
pub use message::{header_str, JobMessage, PARK_REASON_HEADER, RETRIES_HEADER};
pub use publisher::PUBLISH_TIMEOUT;
pub use topology::{Topology, DELAY_TIERS_SECS, DELIVERY_LIMIT, KINDS};
