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
    /// Who may call `history`: any connected client / subscribers of the channel /
    /// anonymous users too (with one of the other two).
    pub allow_history_for_client: bool,
    pub allow_history_for_subscriber: bool,
    pub allow_history_for_anonymous: bool,
    /// Clients may subscribe by themselves (without a token); anonymous users only with
    /// `allow_subscribe_for_anonymous` too. Centrifugo's default: no.
    pub allow_subscribe_for_client: bool,
    pub allow_subscribe_for_anonymous: bool,
    /// Who may publish: any client / subscribers of the channel / anonymous users too.
    pub allow_publish_for_client: bool,
    pub allow_publish_for_subscriber: bool,
    pub allow_publish_for_anonymous: bool,
    /// Who may ask for presence: any client / subscribers / anonymous users too.
    pub allow_presence_for_client: bool,
    pub allow_presence_for_subscriber: bool,
    pub allow_presence_for_anonymous: bool,
    /// Channels `name#user1,user2` may be subscribed to by the users listed, without a token.
    pub allow_user_limited_channels: bool,
    /// Presence and join/leave events (kept for the presence feature; read from the file now).
    pub presence: bool,
    pub join_leave: bool,
    pub force_push_join_leave: bool,
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
            allow_history_for_anonymous: false,
            allow_subscribe_for_client: false,
            allow_subscribe_for_anonymous: false,
            allow_publish_for_client: false,
            allow_publish_for_subscriber: false,
            allow_publish_for_anonymous: false,
            allow_presence_for_client: false,
            allow_presence_for_subscriber: false,
            allow_presence_for_anonymous: false,
            allow_user_limited_channels: false,
            presence: false,
            join_leave: false,
            force_push_join_leave: false,
        }
    }
}

/// A namespace's options as the file has them: the channel options (plain values, copied
/// freely) and the channel name pattern (`channel_regex`, Go's RE2 syntax; empty: none),
/// compiled once by `session::permissions`. Reads and writes of an option go through to
/// `options`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamespaceOptions {
    #[serde(flatten)]
    pub options: ChannelOptions,
    pub channel_regex: String,
}

impl std::ops::Deref for NamespaceOptions {
    type Target = ChannelOptions;
    fn deref(&self) -> &ChannelOptions {
        &self.options
    }
}

impl std::ops::DerefMut for NamespaceOptions {
    fn deref_mut(&mut self) -> &mut ChannelOptions {
        &mut self.options
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
    pub options: NamespaceOptions,
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
    /// Separates a user-limited channel's name from its users (`dialog#42,43`).
    pub user_boundary: String,
    /// Separates the users of a user-limited channel.
    pub user_separator: String,
    pub without_namespace: NamespaceOptions,
    pub namespaces: Vec<Namespace>,
}

impl Default for ChannelSection {
    fn default() -> Self {
        ChannelSection {
            max_length: 255,
            private_prefix: "$".into(),
            namespace_boundary: ":".into(),
            history_meta_ttl: GoDuration::from_secs(HISTORY_META_TTL_DEFAULT_SECS),
            user_boundary: "#".into(),
            user_separator: ",".into(),
            without_namespace: NamespaceOptions::default(),
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
        &self.namespace_options(id).options
    }

    /// The options `id` names, with the channel name pattern.
    pub fn namespace_options(&self, id: NamespaceId) -> &NamespaceOptions {
        match self.namespaces.get(id.0 as usize) {
            Some(namespace) => &namespace.options,
            None => {
                debug_assert_eq!(id, NamespaceId::WITHOUT_NAMESPACE);
                &self.without_namespace
            }
        }
    }

    /// Every namespace id, the top level's first.
    pub fn namespace_ids(&self) -> impl Iterator<Item = NamespaceId> + '_ {
        std::iter::once(NamespaceId::WITHOUT_NAMESPACE)
            .chain((0..self.namespaces.len()).map(|i| NamespaceId(i as u32)))
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
