//! Layers: each is a forward/backward pair over preallocated buffers.

pub mod rnn;
