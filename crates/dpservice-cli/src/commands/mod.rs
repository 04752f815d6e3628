//! Command implementations: one module per command group. Each mirrors the
//! Go command (`cmd/*.go`) and the Go client's conversion of the reply
//! (`dpservice-go/client`), including error wrapping, so that output and
//! errors are the same.

pub(crate) mod capture;
pub(crate) mod firewall;
pub(crate) mod init;
pub(crate) mod interface;
pub(crate) mod loadbalancer;
pub(crate) mod nat;
pub(crate) mod prefix;
pub(crate) mod route;
pub(crate) mod virtualip;
pub(crate) mod vni;

use std::future::Future;
use std::time::{Duration, Instant};

use dp_proto::v1;
use dp_proto::DpdKironcoreClient;
use tonic::transport::{Channel, Endpoint};

use crate::cli::{self, Cli, Command};
use crate::error::CliError;
use crate::render::{RenderOpts, Renderable};
use crate::types::Addr;

pub type Client = DpdKironcoreClient<Channel>;

/// Options shared by all commands.
pub struct Ctx {
    pub address: String,
    pub connect_timeout: Duration,
    pub render: RenderOpts,
}

impl Ctx {
    /// `DPDKClientOptions.NewClient`: dials and waits until connected or
    /// the connect timeout expires.
    pub async fn connect(&self) -> Result<Client, CliError> {
        let fail = || {
            CliError::msg("context deadline exceeded")
                .context(format!("error connecting to {}", self.address))
        };
        let uri = if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("http://{}", self.address)
        };
        let endpoint = Endpoint::from_shared(uri).map_err(|_| fail())?;
        let deadline = Instant::now() + self.connect_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(fail());
            }
            let ep = endpoint.clone().connect_timeout(left);
            match tokio::time::timeout(left, ep.connect()).await {
                Ok(Ok(channel)) => return Ok(DpdKironcoreClient::new(channel)),
                Ok(Err(_)) => {
                    let pause = Duration::from_millis(100)
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                }
                Err(_) => return Err(fail()),
            }
        }
    }

    /// [`Ctx::connect`], failing as the Go commands do when they cannot
    /// create their client.
    pub async fn client(&self) -> Result<Client, CliError> {
        self.connect()
            .await
            .map_err(|e| e.context("error creating dpdk client"))
    }

    /// Renders to stdout (`RenderObject`/`RenderList`).
    pub fn print<R: Renderable + ?Sized>(&self, operation: &str, obj: &R) -> Result<(), CliError> {
        let (text, res) = self.render.render(operation, obj);
        print!("{text}");
        res
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let address = cli.global.address.clone().unwrap_or_else(|| {
        let port = std::env::var("DP_GRPC_PORT")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "1337".into());
        format!("localhost:{port}")
    });
    let connect_timeout = cli.global.connect_timeout.unwrap_or(Duration::from_secs(4));
    let Some(command) = cli.command else {
        return Err(CliError::msg("subcommand is required"));
    };
    let default_output = match &command {
        Command::Create(_) | Command::Delete(_) | Command::Reset(_) => "name",
        Command::Get(_) | Command::List(_) | Command::Capture(_) | Command::Init => "table",
    };
    let ctx = Ctx {
        address,
        connect_timeout,
        render: RenderOpts {
            output: cli
                .global
                .output
                .clone()
                .unwrap_or_else(|| default_output.to_owned()),
            pretty: cli.global.pretty.unwrap_or(false),
            wide: cli.global.wide.unwrap_or(false),
        },
    };
    use cli::{
        CaptureWhat as Cap, CreateWhat as C, DeleteWhat as D, GetWhat as G, ListWhat as L,
        ResetWhat as R,
    };
    match command {
        Command::Init => init::init(&ctx).await,
        Command::Create(c) => match c.what {
            None => from_files(&ctx, &c.filename).await,
            Some(C::Interface(o)) => interface::create(&ctx, o).await,
            Some(C::Prefix(o)) => prefix::create(&ctx, o, prefix::Kind::Prefix).await,
            Some(C::Lbprefix(o)) => prefix::create(&ctx, o, prefix::Kind::LoadBalancer).await,
            Some(C::Route(o)) => route::create(&ctx, o).await,
            Some(C::Virtualip(o)) => virtualip::create(&ctx, o).await,
            Some(C::Loadbalancer(o)) => loadbalancer::create(&ctx, o).await,
            Some(C::Lbtarget(o)) => loadbalancer::create_target(&ctx, o).await,
            Some(C::Nat(o)) => nat::create(&ctx, o).await,
            Some(C::Neighbornat(o)) => nat::create_neighbor(&ctx, o).await,
            Some(C::Firewallrule(o)) => firewall::create(&ctx, o).await,
        },
        Command::Delete(c) => match c.what {
            None => from_files(&ctx, &c.filename).await,
            Some(D::Interface(o)) => interface::delete(&ctx, o).await,
            Some(D::Prefix(o)) => prefix::delete(&ctx, o, prefix::Kind::Prefix).await,
            Some(D::Lbprefix(o)) => prefix::delete(&ctx, o, prefix::Kind::LoadBalancer).await,
            Some(D::Route(o)) => route::delete(&ctx, o).await,
            Some(D::Virtualip(o)) => virtualip::delete(&ctx, o).await,
            Some(D::Loadbalancer(o)) => loadbalancer::delete(&ctx, o).await,
            Some(D::Lbtarget(o)) => loadbalancer::delete_target(&ctx, o).await,
            Some(D::Nat(o)) => nat::delete(&ctx, o).await,
            Some(D::Neighbornat(o)) => nat::delete_neighbor(&ctx, o).await,
            Some(D::Firewallrule(o)) => firewall::delete(&ctx, o).await,
        },
        Command::Get(c) => match c.what {
            None => Err(CliError::msg("subcommand is required")),
            Some(G::Interface(o)) => interface::get(&ctx, o).await,
            Some(G::Virtualip(o)) => virtualip::get(&ctx, o).await,
            Some(G::Loadbalancer(o)) => loadbalancer::get(&ctx, o).await,
            Some(G::Nat(o)) => nat::get(&ctx, o).await,
            Some(G::Firewallrule(o)) => firewall::get(&ctx, o).await,
            Some(G::Vni(o)) => vni::get(&ctx, o).await,
            Some(G::Version) => init::version(&ctx).await,
            Some(G::Init) => init::get_init(&ctx).await,
            Some(G::Lbprefix(o)) => prefix::list(&ctx, o, prefix::Kind::LoadBalancer).await,
            Some(G::Lbtarget(o)) => loadbalancer::list_targets(&ctx, o).await,
            Some(G::Prefix(o)) => prefix::list(&ctx, o, prefix::Kind::Prefix).await,
            Some(G::Route(o)) => route::list(&ctx, o).await,
        },
        Command::List(c) => match c.what {
            None => Err(CliError::msg("subcommand is required")),
            Some(L::Firewallrules(o)) => firewall::list(&ctx, o).await,
            Some(L::Interfaces(o)) => interface::list(&ctx, &o.sort_by).await,
            Some(L::Prefixes(o)) => prefix::list(&ctx, o, prefix::Kind::Prefix).await,
            Some(L::Lbprefixes(o)) => prefix::list(&ctx, o, prefix::Kind::LoadBalancer).await,
            Some(L::Routes(o)) => route::list(&ctx, o).await,
            Some(L::Lbtargets(o)) => loadbalancer::list_targets(&ctx, o).await,
            Some(L::Nats(o)) => nat::list(&ctx, o).await,
            Some(L::Loadbalancers(o)) => loadbalancer::list(&ctx, &o.sort_by).await,
        },
        Command::Reset(c) => match c.what {
            None => Err(CliError::msg("subcommand is required")),
            Some(R::Vni(o)) => vni::reset(&ctx, o).await,
        },
        Command::Capture(c) => match c.what {
            None => Err(CliError::msg("subcommand is required")),
            Some(Cap::Start(o)) => capture::start(&ctx, o).await,
            Some(Cap::Stop) => capture::stop(&ctx).await,
            Some(Cap::Status) => capture::status(&ctx).await,
        },
    }
}

/// `create`/`delete` without a subcommand: objects from files (`-f`).
async fn from_files(ctx: &Ctx, files: &[String]) -> Result<(), CliError> {
    ctx.client().await?;
    if files.is_empty() {
        return Ok(());
    }
    Err(
        CliError::msg("reading objects from files (-f) is not supported by this dpservice-cli")
            .context("error collecting objects"),
    )
}

// ------------------------------------------------------- shared conversions

/// Fails with the dpservice status of a reply, as the Go client does.
pub fn check(status: &Option<v1::Status>) -> Result<(), CliError> {
    match status {
        Some(s) if s.code != 0 => Err(CliError::status(s.code, &s.message)),
        _ => Ok(()),
    }
}

/// Awaits one RPC and [`check`]s the dpservice status of its reply
/// (`status` picks it out); both a transport error and a failed status are
/// passed through `wrap`, as the Go client's callers wrap them.
pub async fn call<T>(
    reply: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    status: impl FnOnce(&T) -> &Option<v1::Status>,
    wrap: impl Fn(CliError) -> CliError,
) -> Result<T, CliError> {
    let res = reply.await.map_err(|s| wrap(s.into()))?.into_inner();
    check(status(&res)).map_err(wrap)?;
    Ok(res)
}

/// `netip.ParseAddr(string(b))`.
pub fn parse_wire_addr(b: &[u8]) -> Result<Addr, CliError> {
    let s = String::from_utf8_lossy(b);
    cli::parse_addr_strict(&s)
        .map(Addr::ip)
        .map_err(CliError::msg)
}

/// Like [`parse_wire_addr`], but an empty field is the zero address (the Go
/// client skips parsing empty underlay routes and similar).
pub fn parse_wire_addr_or_zero(b: &[u8]) -> Result<Addr, CliError> {
    if b.is_empty() {
        Ok(Addr::default())
    } else {
        parse_wire_addr(b)
    }
}

/// `api.NetIPAddrToProtoIpAddress`
pub fn ip_to_proto(a: &Addr) -> v1::IpAddress {
    let ipver = match a.0 {
        Some(std::net::IpAddr::V6(_)) => v1::IpVersion::Ipv6,
        _ => v1::IpVersion::Ipv4,
    };
    v1::IpAddress {
        ipver: ipver as i32,
        address: a.text().into_bytes(),
    }
}

/// `api.NetIPAddrToByteSlice`: nothing for the zero address.
pub fn addr_bytes(a: &Addr) -> Vec<u8> {
    a.text().into_bytes()
}

/// The `Prefix` message for a CLI prefix.
pub fn prefix_to_proto(p: &crate::types::Prefix) -> v1::Prefix {
    v1::Prefix {
        ip: Some(ip_to_proto(&p.addr())),
        length: p.bits().max(0) as u32,
        underlay_route: Vec::new(),
    }
}

/// Go's `sort.SliceStable` with a "less" function (an insertion sort, which
/// is what Go runs for short lists; tolerant of inconsistent "less"
/// functions, some of the Go CLI's are).
pub fn stable_sort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod golden;
