//! Layers: each is a forward/backward pair over preallocated buffers.

pub mod attention;
pub mod dropout;
pub mod embedding;
pub mod linear;
pub mod loss;
pub mod phased;
pub mod pool;
pub mod rnn;
pub mod softmax;
