//! Tells systemd (a `Type=notify` unit) when the daemon is ready (after its
//! first evaluation, so units ordered after the firewall start protected
//! when the script is good) and what state it is in (`STATUS=`).

use std::os::unix::net::UnixDatagram;

/// Sends `state` to `$NOTIFY_SOCKET`; does nothing outside systemd.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sender) = UnixDatagram::unbound() else {
        return;
    };
    let socket = socket.to_string_lossy();
    let sent = match socket.strip_prefix('@') {
        // An abstract socket: its name has no presence in the filesystem.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| sender.send_to_addr(state.as_bytes(), &addr))
        }
        None => sender.send_to(state.as_bytes(), socket.as_ref()),
    };
    if let Err(err) = sent {
        tracing::debug!("cannot notify systemd: {err}");
    }
}
