//! Packet sources and sinks.
