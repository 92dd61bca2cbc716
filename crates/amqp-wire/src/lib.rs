//! AMQP 0-9-1 wire format (being written).
