//! Private namespace worlds on the real kernel: the switch, hosts and children
//! that `nicslice lab` and the kernel tests build, always inside namespaces
//! this process creates and deletes, never touching the namespace it runs in.

pub mod by_nicslice;
pub mod capabilities;
pub mod kept;
pub mod neighbours;
pub mod realize;
pub mod run;
pub mod scenarios;
pub mod world;

pub use world::{Host, World};
