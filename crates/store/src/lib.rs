//! nicslice store layer.
