//! nicslice engine layer.
