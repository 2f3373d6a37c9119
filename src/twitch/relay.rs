//! The plain-TCP transport to an IRC server other than Twitch (`TWITCH_IRC_ADDR`): tests and relays.
//!
//! twitch-irc creates connections through `MakeConnection::new_socket()`, which takes no arguments, so
//! the address is process-wide: set once, and a second, different address is refused rather than
//! silently sending one bot's chat to another's server. Knows sockets, nothing of chat.

use std::net::SocketAddr;
use std::sync::OnceLock;

use async_trait::async_trait;
use tokio::net::TcpStream;
use twitch_irc::transport::tcp::{MakeConnection, TCPTransport, TCPTransportConnectError};

use super::flood::Guarded;

static ADDR: OnceLock<SocketAddr> = OnceLock::new();

/// Another Twitch source in this process already talks to a different server.
#[derive(Debug, thiserror::Error)]
#[error("TWITCH_IRC_ADDR {wanted} conflicts with {current}, already in use in this process")]
pub struct AddrConflict {
    wanted: SocketAddr,
    current: SocketAddr,
}

/// Points every relay connection of this process at `addr`.
pub fn use_addr(addr: SocketAddr) -> Result<(), AddrConflict> {
    let current = *ADDR.get_or_init(|| addr);
    if current == addr { Ok(()) } else { Err(AddrConflict { wanted: addr, current }) }
}

/// Connects to the address given to [`use_addr`].
#[derive(Debug)]
pub struct Relay;

#[async_trait]
impl MakeConnection for Relay {
    type Socket = TcpStream;

    async fn new_socket() -> Result<TcpStream, TCPTransportConnectError> {
        let addr = ADDR.get().ok_or_else(|| std::io::Error::other("TWITCH_IRC_ADDR is not set"))?;
        let socket = TcpStream::connect(addr).await?;
        // Chat lines are small and latency matters more than packet count.
        socket.set_nodelay(true)?;
        Ok(socket)
    }
}

/// twitch-irc's line transport over [`Relay`] sockets, behind the flood shedder.
pub type RelayTransport = TCPTransport<Guarded<Relay>>;
