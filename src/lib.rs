//! wsecho
pub mod proto {}
