//! `CachePadded`: keeps a value alone on its cache line(s) so that the producer's and the
//! consumer's indices never share a line (false sharing would make every push and pop bounce
//! the line between cores).

/// 128 bytes: x86-64 prefetches cache lines in adjacent pairs, and aarch64 big cores use
/// 128-byte lines, so 64 is not enough to keep two hot indices apart on either.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
