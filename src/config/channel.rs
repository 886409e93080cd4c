//! Channel options: the one set of per-channel settings (Centrifugo's `ChannelOptions`), used
//! for `channel.without_namespace` and inlined into every `channel.namespaces[]` entry, and
//! the resolution of a channel name to its options. A new channel option is one field here.

use serde::{Deserialize, Serialize};

use super::duration::GoDuration;
use crate::limits::HISTORY_META_TTL_DEFAULT_MS;

const HISTORY_META_TTL_DEFAULT_SECS: i64 = (HISTORY_META_TTL_DEFAULT_MS / 1_000) as i64;

/// The options of one channel namespace (or of channels without one). Each namespace has its
/// own full set, as in Centrifugo: nothing is inherited from `without_namespace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelOptions {
    /// Publications kept per channel; history is on when this and `history_ttl` are set.
    pub history_size: usize,
    /// How long publications are kept (whole seconds).
    pub history_ttl: GoDuration,
    /// How long a channel's position (its stream meta) outlives its last publication once
    /// its history is gone (whole seconds; 0: `channel.history_meta_ttl`).
    pub history_meta_ttl: GoDuration,
    /// Recovery for every subscriber / for subscribers that ask for it.
    pub force_recovery: bool,
    pub allow_recovery: bool,
    /// Stream positions in subscribe results for every subscriber / for those that ask.
    pub force_positioning: bool,
    pub allow_positioning: bool,
    /// Who may call `history`: any connected client / subscribers of the channel.
    pub allow_history_for_client: bool,
    pub allow_history_for_subscriber: bool,
    /// Clients may subscribe by themselves. ringcast's default is `true` until subscription
    /// tokens exist (Centrifugo's is `false`).
    pub allow_subscribe_for_client: bool,
    /// Clients may publish.
    pub allow_publish_for_client: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            history_size: 0,
            history_ttl: GoDuration(0),
            history_meta_ttl: GoDuration(0),
            force_recovery: false,
            allow_recovery: false,
            force_positioning: false,
            allow_positioning: false,
            allow_history_for_client: false,
            allow_history_for_subscriber: false,
            allow_subscribe_for_client: true,
            allow_publish_for_client: false,
        }
    }
}

impl ChannelOptions {
    /// History is on only with both a size and a ttl, as in Centrifugo.
    pub fn history(&self) -> bool {
        self.history_size > 0 && self.history_ttl.0 > 0
    }

    pub fn history_ttl_ms(&self) -> u64 {
        self.history_ttl.as_millis()
    }
}

/// One channel namespace: channels named `<name><namespace_boundary><rest>` take its options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Namespace {
    pub name: String,
    #[serde(flatten)]
    pub options: ChannelOptions,
}

/// The `channel` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelSection {
    /// Longest channel name in bytes (longer → error 107).
    pub max_length: usize,
    /// Channels starting with this are private (they need a subscription token).
    pub private_prefix: String,
    /// Separates a namespace's name from the rest of a channel name.
    pub namespace_boundary: String,
    /// The meta ttl of namespaces that set none (whole seconds; 0: Centrifugo's 30 days).
    pub history_meta_ttl: GoDuration,
    pub without_namespace: ChannelOptions,
    pub namespaces: Vec<Namespace>,
}

impl Default for ChannelSection {
    fn default() -> Self {
        ChannelSection {
            max_length: 255,
            private_prefix: "$".into(),
            namespace_boundary: ":".into(),
            history_meta_ttl: GoDuration::from_secs(HISTORY_META_TTL_DEFAULT_SECS),
            without_namespace: ChannelOptions::default(),
            namespaces: Vec::new(),
        }
    }
}

/// Which options a channel takes: the top level's or those of a namespace (an index into
/// `namespaces`). Four bytes where a copy of the options is 40: a channel's state keeps this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceId(u32);

impl NamespaceId {
    const WITHOUT_NAMESPACE: NamespaceId = NamespaceId(u32::MAX);
}

impl ChannelSection {
    /// The options of `channel`, from its namespace (the text before the first boundary), or
    /// `None` if that namespace is not configured (error 102). A private channel's prefix is
    /// not part of its namespace (`$chat:x` is in `chat`).
    pub fn options(&self, channel: &str) -> Option<&ChannelOptions> {
        self.namespace_of(channel).map(|id| self.options_of(id))
    }

    /// The meta ttl of channels with `options` in milliseconds: theirs, or the section's, or
    /// `HISTORY_META_TTL_DEFAULT_MS`, the first that is set.
    pub fn history_meta_ttl_ms(&self, options: &ChannelOptions) -> u64 {
        [options.history_meta_ttl, self.history_meta_ttl]
            .into_iter()
            .map(GoDuration::as_millis)
            .find(|&ms| ms > 0)
            .unwrap_or(HISTORY_META_TTL_DEFAULT_MS)
    }

    /// The options `id` names.
    pub fn options_of(&self, id: NamespaceId) -> &ChannelOptions {
        match self.namespaces.get(id.0 as usize) {
            Some(namespace) => &namespace.options,
            None => {
                debug_assert_eq!(id, NamespaceId::WITHOUT_NAMESPACE);
                &self.without_namespace
            }
        }
    }

    /// Which options `channel` takes, or `None` if its namespace is not configured.
    pub fn namespace_of(&self, channel: &str) -> Option<NamespaceId> {
        let channel = channel
            .strip_prefix(self.private_prefix.as_str())
            .filter(|_| !self.private_prefix.is_empty())
            .unwrap_or(channel);
        // The boundary is one byte (":") in nearly every configuration: a byte search, not a
        // substring searcher built per call.
        let split = match self.namespace_boundary.as_bytes() {
            &[byte] => channel.split_once(char::from(byte)),
            _ => channel.split_once(self.namespace_boundary.as_str()),
        };
        let Some((name, _)) = split else {
            return Some(NamespaceId::WITHOUT_NAMESPACE);
        };
        let index = self.namespaces.iter().position(|ns| ns.name == name)?;
        // Validation bounds the namespaces far below u32::MAX.
        Some(NamespaceId(u32::try_from(index).ok()?))
    }
}
