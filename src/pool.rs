//! Write buffers shared by every connection of one reactor.
//!
//! A connection borrows chunks only while the kernel has refused some of its
//! bytes (backpressure) and gives them back as soon as they are written, so
//! an idle connection holds no buffer at all. Single-threaded, no locks: each
//! reactor owns its pool.

use std::collections::VecDeque;
use std::io::IoSlice;

/// A free list of fixed-size byte chunks.
#[derive(Debug)]
pub struct BufPool {
    /// Capacity of every chunk, in bytes.
    chunk_size: usize,
    /// Chunks ready for reuse.
    free: Vec<Vec<u8>>,
    /// Most free chunks kept for reuse; more are released to the allocator.
    max_free: usize,
    /// Chunks currently lent out (held by connections' queues).
    in_use: usize,
}

impl BufPool {
    /// A pool of `chunk_size`-byte chunks keeping at most `max_free` spares.
    pub fn new(chunk_size: usize, max_free: usize) -> Self {
        BufPool { chunk_size: chunk_size.max(64), free: Vec::new(), max_free, in_use: 0 }
    }

    /// Borrow an empty chunk.
    pub fn take(&mut self) -> Vec<u8> {
        self.in_use += 1;
        self.free.pop().unwrap_or_else(|| Vec::with_capacity(self.chunk_size))
    }

    /// Return a chunk.
    pub fn put(&mut self, mut chunk: Vec<u8>) {
        self.in_use -= 1;
        if self.free.len() < self.max_free && chunk.capacity() == self.chunk_size {
            chunk.clear();
            self.free.push(chunk);
        }
    }

    /// Chunks currently held by connections.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Bytes of one chunk.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
}

/// A connection's bytes that the kernel has not taken yet, in pooled chunks.
/// One pointer wide, and allocation-free, whenever the connection is not
/// backlogged.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Present only while bytes are waiting.
    inner: Option<Box<Backlog>>,
}

#[derive(Debug, Default)]
struct Backlog {
    /// Chunks in send order; only the last one may have spare capacity.
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the first chunk already written.
    head: usize,
    /// Unsent bytes in total.
    len: usize,
}

impl OutQueue {
    /// Unsent bytes.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |b| b.len)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append `bytes`, borrowing chunks from `pool` as needed.
    pub fn push(&mut self, mut bytes: &[u8], pool: &mut BufPool) {
        if bytes.is_empty() {
            return;
        }
        let b = self.inner.get_or_insert_with(Default::default);
        while !bytes.is_empty() {
            let room = b.chunks.back().map_or(0, |c| c.capacity() - c.len());
            if room == 0 {
                b.chunks.push_back(pool.take());
                continue;
            }
            let n = room.min(bytes.len());
            let last = b.chunks.back_mut().expect("a chunk with room");
            last.extend_from_slice(&bytes[..n]);
            b.len += n;
            bytes = &bytes[n..];
        }
    }

    /// Fill `out` with slices of the unsent bytes, in order; returns how many.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let Some(b) = self.inner.as_ref() else { return 0 };
        let mut n = 0;
        for (i, c) in b.chunks.iter().enumerate() {
            if n == out.len() {
                break;
            }
            let start = if i == 0 { b.head } else { 0 };
            if start < c.len() {
                out[n] = IoSlice::new(&c[start..]);
                n += 1;
            }
        }
        n
    }

    /// Mark `n` bytes written, returning emptied chunks to `pool`.
    pub fn consume(&mut self, mut n: usize, pool: &mut BufPool) {
        let Some(b) = self.inner.as_mut() else { return };
        debug_assert!(n <= b.len);
        b.len -= n;
        while n > 0 {
            let first_len = b.chunks.front().map_or(0, |c| c.len());
            let left = first_len - b.head;
            if n >= left {
                n -= left;
                b.head = 0;
                if let Some(c) = b.chunks.pop_front() {
                    pool.put(c);
                }
            } else {
                b.head += n;
                n = 0;
            }
        }
        if b.len == 0 {
            self.clear(pool);
        }
    }

    /// Drop everything, returning the chunks to `pool`; frees the backlog so
    /// an idle connection holds nothing.
    pub fn clear(&mut self, pool: &mut BufPool) {
        if let Some(b) = self.inner.take() {
            for c in b.chunks {
                pool.put(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_preserves_order_and_returns_every_chunk() {
        let mut pool = BufPool::new(64, 4);
        let mut q = OutQueue::default();
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        q.push(&data[..300], &mut pool);
        q.push(&data[300..], &mut pool);
        assert_eq!(q.len(), 1000);
        let mut got = Vec::new();
        while !q.is_empty() {
            let mut sl = [IoSlice::new(&[]); 4];
            let n = q.slices(&mut sl);
            // Pretend the kernel takes 37 bytes at a time.
            let mut take = 37.min(q.len());
            let mut used = 0;
            for s in &sl[..n] {
                let k = take.min(s.len());
                got.extend_from_slice(&s[..k]);
                take -= k;
                used += k;
                if take == 0 {
                    break;
                }
            }
            q.consume(used, &mut pool);
        }
        assert_eq!(got, data);
        assert_eq!(pool.in_use(), 0);
    }
}
