//! `ChannelNames` and `ChannelList`: many channel names in one buffer. A broadcast's 100,000
//! names cost a few allocations instead of two per name (a `String` when decoded, an
//! `Arc<str>` to travel): `ChannelNames` is what a request decodes into, `ChannelList` the
//! names one owner shard gets, each with its index in the request, sharing the buffer.
//! Plain data: imports nothing of the crate.

use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use smallvec::SmallVec;

/// Channel names in request order, in one buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChannelNames {
    buffer: String,
    /// End of each name in `buffer` (names are contiguous: one starts where the last ended).
    ends: Vec<u32>,
}

impl ChannelNames {
    pub fn push(&mut self, name: &str) {
        self.buffer.push_str(name);
        let end = u32::try_from(self.buffer.len()).expect("channel names under 4 GiB in all");
        self.ends.push(end);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each name with its index and its place in the buffer.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        self.spans()
            .map(|(index, start, end)| (index, &self.buffer[start as usize..end as usize]))
    }

    fn spans(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        (0u32..)
            .zip(starts.zip(self.ends.iter().copied()))
            .map(|(index, (start, end))| (index, start, end))
    }

    /// Splits the names into `parts` lists by `part(index, name)` (`None`: left out), in
    /// order within each list; the lists share one buffer.
    pub fn split(
        self,
        parts: usize,
        mut part: impl FnMut(u32, &str) -> Option<usize>,
    ) -> Vec<ChannelList> {
        let mut items: Vec<Items> = vec![Items::new(); parts];
        for (index, start, end) in self.spans() {
            if let Some(p) = part(index, &self.buffer[start as usize..end as usize]) {
                items[p].push(Item { index, start, end });
            }
        }
        let buffer = Arc::new(self.buffer);
        items
            .into_iter()
            .map(|items| ChannelList {
                buffer: buffer.clone(),
                items,
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for ChannelNames {
    /// A JSON array of strings, each appended to the buffer as it is read: no string is
    /// allocated per name (an escaped name is unescaped by the parser into its scratch).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = ChannelNames;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of channel names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChannelNames, A::Error> {
                let mut names = ChannelNames::default();
                if let Some(n) = seq.size_hint() {
                    names.ends.reserve(n);
                }
                // Bounded by the input.
                while seq.next_element_seed(NameInto(&mut names))?.is_some() {}
                Ok(names)
            }
        }
        deserializer.deserialize_seq(Names)
    }
}

/// Reads one JSON string into a `ChannelNames`' buffer.
struct NameInto<'a>(&'a mut ChannelNames);

impl<'de> DeserializeSeed<'de> for NameInto<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for NameInto<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a channel name")
    }
    fn visit_str<E: de::Error>(self, name: &str) -> Result<(), E> {
        self.0.push(name);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Item {
    index: u32,
    start: u32,
    end: u32,
}

/// A list's entries: one inline (a single publish allocates no list).
type Items = SmallVec<[Item; 1]>;

/// Channel names for one owner, each with its index in the caller's request.
#[derive(Debug, Clone)]
pub struct ChannelList {
    buffer: Arc<String>,
    items: Items,
}

impl ChannelList {
    /// One channel, at index 0.
    pub fn one(channel: &str) -> Self {
        let end = u32::try_from(channel.len()).expect("a channel name under 4 GiB");
        let mut items = Items::new();
        items.push(Item {
            index: 0,
            start: 0,
            end,
        });
        ChannelList {
            buffer: Arc::new(channel.to_owned()),
            items,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// (index in the request, channel), in order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        self.items.iter().map(|item| {
            (
                item.index,
                &self.buffer[item.start as usize..item.end as usize],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_decode_split_and_keep_their_indexes() {
        let names: ChannelNames =
            serde_json::from_str(r#"["a", "b\"c", "", "dé", "news:1"]"#).unwrap();
        assert_eq!(names.len(), 5);
        let all: Vec<_> = names.iter().collect();
        assert_eq!(
            all,
            [(0, "a"), (1, "b\"c"), (2, ""), (3, "dé"), (4, "news:1")]
        );
        let lists = names.split(2, |i, name| (!name.is_empty()).then_some(i as usize % 2));
        let even: Vec<_> = lists[0].iter().collect();
        let odd: Vec<_> = lists[1].iter().collect();
        assert_eq!(even, [(0, "a"), (4, "news:1")]);
        assert_eq!(odd, [(1, "b\"c"), (3, "dé")]);
        let one = ChannelList::one("x");
        assert_eq!(one.iter().collect::<Vec<_>>(), [(0, "x")]);
        assert!(serde_json::from_str::<ChannelNames>(r#"["a", 1]"#).is_err());
    }
}
