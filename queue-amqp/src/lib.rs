//! RabbitMQ (lapin) job transport for partway.
