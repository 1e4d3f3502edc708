//! A thin test vehicle for the conformance suite: behaves exactly as the
//! `nicslice` binary does when run as nicslice-macvlan, nicslice-ipvlan or
//! nicslice-ipam (the same `nicslice_cni::main`), chosen by `argv[0]`.

fn main() {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    match nicslice_cni::Plugin::from_argv0(&arg0) {
        Some(plugin) => std::process::exit(nicslice_cni::main(plugin)),
        None => {
            eprintln!("nicslice-cni: run me as nicslice-macvlan, nicslice-ipvlan or nicslice-ipam");
            std::process::exit(2);
        }
    }
}
