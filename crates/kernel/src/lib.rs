//! nicslice kernel layer.
