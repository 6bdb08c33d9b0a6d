package stream

import (
	"golang.org/x/sys/unix"
)

// send writes b to the connection without blocking: what the socket does
// not take at once is queued (up to WriteQueue bytes; over it the
// connection is closed) and flushed by a goroutine of its own when the
// socket is writable. Sends leave in the order they were made, from any
// goroutine. It keeps no reference to b.
func (c *conn) send(b []byte) error { return c.sendAll(b, nil) }

// sendAll is send of the messages of b, which end at ends (nil: b is one
// message), in one write.
func (c *conn) sendAll(b []byte, ends []int) error {
	var err error
	if c.s.ws {
		err = c.writeFramed(b, ends)
	} else {
		err = c.write(b)
	}
	if err == nil {
		c.s.count.msgsOut.Add(uint64(msgs(ends)))
		c.s.count.bytesOut.Add(uint64(len(b)))
	}
	return err
}

// write is send without the counting.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return c.gone()
	}
	var err error
	switch {
	case !c.established:
		if len(c.early)+len(b) > c.s.cfg.WriteQueue {
			c.close(ClosedWriteQueue)
			return errWriteQueue
		}
		c.early = append(c.early, b...)
	case c.tls != nil:
		_, err = c.tls.Write(b)
	default:
		err = c.writeRaw(b)
	}
	return err
}

// reply queues b, the answer to a message read from c, in the worker's
// batch of c's answers, written in one write when the read's messages are
// handled (flushReplies) or when the batch is full. The worker's mutex is
// held.
func (c *conn) reply(b []byte) error {
	w := c.w
	if c.closed.Load() {
		return c.gone()
	}
	head := 0
	if c.s.ws {
		head = wsHeaderLen(len(b))
	}
	if len(w.replies)+head+len(b) > cap(w.replies) {
		if err := c.flushReplies(); err != nil {
			return err
		}
		if head+len(b) > cap(w.replies) {
			if c.s.ws {
				return c.writeFramed(b, nil)
			}
			return c.write(b)
		}
	}
	if c.s.ws {
		w.replies = appendWSHeader(w.replies, c.wsDataOp(), len(b))
	}
	w.replies = append(w.replies, b...)
	return nil
}

// writeFramed writes the messages of b (ends as sendAll's), a WebSocket
// message each, their frames put together in a buffer of the server's
// pool.
func (c *conn) writeFramed(b []byte, ends []int) error {
	fp := c.s.frames.Get().(*[]byte)
	f, start := (*fp)[:0], 0
	if ends == nil {
		f = appendWSHeader(f, c.wsDataOp(), len(b))
		f = append(f, b...)
	}
	for _, end := range ends {
		f = appendWSHeader(f, c.wsDataOp(), end-start)
		f = append(f, b[start:end]...)
		start = end
	}
	err := c.write(f)
	if cap(f) <= maxPooledFrame {
		*fp = f
		c.s.frames.Put(fp)
	}
	return err
}

// maxPooledFrame bounds the frame buffers the pool keeps.
const maxPooledFrame = 64 << 10

// writeUnframed writes b, the answer to a WebSocket upgrade, ahead of
// anything sent to the connection before it is established.
func (c *conn) writeUnframed(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return c.gone()
	}
	if c.tls != nil {
		_, err := c.tls.Write(b)
		return err
	}
	return c.writeRaw(b)
}

// flushReplies writes the batch of c's answers. The worker's mutex is
// held.
func (c *conn) flushReplies() error {
	w := c.w
	if len(w.replies) == 0 {
		return nil
	}
	err := c.write(w.replies)
	w.replies = w.replies[:0]
	return err
}

// establish marks the connection ready to write and writes what was sent
// before.
func (c *conn) establish() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.established = true
	early := c.early
	c.early = nil
	if len(early) == 0 || c.closed.Load() {
		return nil
	}
	if c.tls != nil {
		_, err := c.tls.Write(early)
		return err
	}
	return c.writeRaw(early)
}

// writeRaw writes b to the socket, or queues it behind what is queued.
func (c *conn) writeRaw(b []byte) error {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.closed.Load() {
		return c.gone()
	}
	if !c.flushing {
		n, err := c.writeNow(b)
		if err != nil {
			c.close(ClosedWriteError)
			return err
		}
		if b = b[n:]; len(b) == 0 {
			return nil
		}
	}
	if len(c.wq)+len(b) > c.s.cfg.WriteQueue {
		c.close(ClosedWriteQueue)
		return errWriteQueue
	}
	c.wq = append(c.wq, b...)
	if !c.flushing {
		c.flushing = true
		c.s.wg.Add(1) // the reader, not done before qmu is free, keeps the group above 0
		go c.flush()
	}
	return nil
}

// writeNow writes what of b the socket takes without blocking. c.qmu is
// held.
func (c *conn) writeNow(b []byte) (int, error) {
	c.wbuf, c.wn, c.werr = b, 0, nil
	err := c.rc.Write(c.writeFn)
	c.wbuf = nil
	if err == nil {
		err = c.werr
	}
	return c.wn, err
}

// writeNowFn is writeNow's callback: it never waits.
func (c *conn) writeNowFn(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, err := writeNB(int(fd), c.wbuf[c.wn:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return true
		case err != nil:
			c.werr = err
			return true
		}
		c.wn += n
	}
	return true
}

// flush writes the queue as the socket takes it, until it is empty or the
// connection fails. It owns the socket's writes while c.flushing is set:
// senders only append to the queue meanwhile.
func (c *conn) flush() {
	defer c.s.wg.Done()
	for {
		c.qmu.Lock()
		if len(c.wq) == 0 || (c.closed.Load() && !c.finAfterFlush) {
			fin := c.finAfterFlush
			c.wq, c.flushing, c.finAfterFlush = nil, false, false
			c.qmu.Unlock()
			if fin {
				c.shutdown(unix.SHUT_WR)
			}
			return
		}
		c.fbuf, c.fn, c.ferr = c.wq, 0, nil
		c.qmu.Unlock()
		err := c.rc.Write(c.flushFn)
		if err == nil {
			err = c.ferr
		}
		c.qmu.Lock()
		c.wq = c.wq[c.fn:]
		c.fbuf = nil
		if err != nil {
			c.finAfterFlush = false // the queue cannot go out: drop it
		}
		c.qmu.Unlock()
		if err != nil {
			c.close(ClosedWriteError)
		}
	}
}

// flushNowFn is flush's callback: it waits for the socket to be writable
// until the snapshot is written.
func (c *conn) flushNowFn(fd uintptr) bool {
	for c.fn < len(c.fbuf) {
		n, err := writeNB(int(fd), c.fbuf[c.fn:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false
		case err != nil:
			c.ferr = err
			return true
		}
		c.fn += n
	}
	return true
}
