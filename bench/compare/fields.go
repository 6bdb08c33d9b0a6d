package compare

import (
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"
	"github.com/viaduct-sip/viaduct/parser"
)

// Fields are the values a stateless proxy reads from every message it
// forwards: what it is (request method or response status), the Call-ID,
// the top Via's branch and sent-by, how many Via values there are, the CSeq,
// Max-Forwards, Content-Length and the To tag.
//
// ViaductFields and SipgoFields extract them from each parser's message with
// that parser's own API; Fields is the common, comparable form the
// correctness test uses.
type Fields struct {
	Method         string // request method, "" for a response
	Status         int    // response status code, 0 for a request
	CallID         string
	Branch         string // top Via branch parameter
	ViaHost        string // top Via sent-by host
	ViaPort        int    // top Via sent-by port, 0 when absent
	ViaCount       int    // every Via value, across lines and commas
	CSeqNum        uint32
	CSeqMethod     string
	MaxForwards    int
	HasMaxForwards bool
	ContentLength  int
	HasContentLen  bool
	ToTag          string
}

// ViaductFields is Fields as slices into the buffer given to parser.Parse,
// so that reading them allocates nothing.
type ViaductFields struct {
	Method         []byte
	Status         int
	CallID         []byte
	Branch         []byte
	ViaHost        []byte
	ViaPort        int
	ViaCount       int
	CSeqNum        uint32
	CSeqMethod     []byte
	MaxForwards    int
	HasMaxForwards bool
	ContentLength  int
	HasContentLen  bool
	ToTag          []byte
}

// ReadViaduct fills f from m, a message parser.Parse has indexed. It returns
// the error of the accessors that can fail (the lower Vias and To).
func ReadViaduct(m *parser.Message, f *ViaductFields) error {
	if m.IsRequest() {
		f.Method, f.Status = m.Method(), 0
	} else {
		f.Method, f.Status = nil, m.StatusCode()
	}
	f.CallID = m.CallID()
	v := m.TopVia()
	f.Branch, f.ViaHost, f.ViaPort = v.Branch, v.Host, v.Port
	f.ViaCount = m.ViaCount()
	f.CSeqNum, f.CSeqMethod = m.CSeq()
	f.MaxForwards, f.HasMaxForwards = m.MaxForwards()
	f.ContentLength, f.HasContentLen = m.ContentLength()
	f.ToTag = m.ToTag()
	return nil
}

// Common converts f to Fields (it allocates; it is for tests only).
func (f *ViaductFields) Common() Fields {
	return Fields{
		Method: string(f.Method), Status: f.Status, CallID: string(f.CallID),
		Branch: string(f.Branch), ViaHost: string(f.ViaHost), ViaPort: f.ViaPort,
		ViaCount: f.ViaCount, CSeqNum: f.CSeqNum, CSeqMethod: string(f.CSeqMethod),
		MaxForwards: f.MaxForwards, HasMaxForwards: f.HasMaxForwards,
		ContentLength: f.ContentLength, HasContentLen: f.HasContentLen,
		ToTag: string(f.ToTag),
	}
}

// Sum folds f into a number, so that a benchmark can consume every field.
func (f *ViaductFields) Sum() int {
	return len(f.Method) + f.Status + len(f.CallID) + len(f.Branch) + len(f.ViaHost) +
		f.ViaPort + f.ViaCount + int(f.CSeqNum) + len(f.CSeqMethod) + f.MaxForwards +
		f.ContentLength + len(f.ToTag)
}

// errMissing reports a header sipgo's lazy accessors did not return.
var errMissing = errors.New("header missing or malformed")

// SipgoFields is Fields as sipgo returns them: strings and numbers copied
// out of its parsed header structs.
type SipgoFields = Fields

// ReadSipgo fills f from msg, a message sipgo's parser returned, the way a
// sipgo user does: a type switch on *sip.Request / *sip.Response, the typed
// header accessors (Via, CallID, CSeq, MaxForwards, ContentLength, To) and
// HeaderParams.Get for the branch and tag. Via values are counted by walking
// the parsed header list; sipgo splits comma-separated Via values into one
// *sip.ViaHeader each. This is cheaper than msg.GetHeaders("Via"), which
// builds a new slice, so the comparison errs in sipgo's favour.
func ReadSipgo(msg sip.Message, f *SipgoFields) error {
	// Max-Forwards and the header list are not in the sip.Message
	// interface, but both *sip.Request and *sip.Response have them.
	var (
		hdrs []sip.Header
		mf   *sip.MaxForwardsHeader
	)
	switch m := msg.(type) {
	case *sip.Request:
		f.Method, f.Status = string(m.Method), 0
		hdrs, mf = m.Headers(), m.MaxForwards()
	case *sip.Response:
		f.Method, f.Status = "", m.StatusCode
		hdrs, mf = m.Headers(), m.MaxForwards()
	default:
		return fmt.Errorf("unexpected message type %T", msg)
	}
	cid := msg.CallID()
	if cid == nil {
		return fmt.Errorf("Call-ID: %w", errMissing)
	}
	f.CallID = string(*cid)
	via := msg.Via()
	if via == nil {
		return fmt.Errorf("Via: %w", errMissing)
	}
	f.Branch, _ = via.Params.Get("branch")
	f.ViaHost, f.ViaPort = via.Host, via.Port
	n := 0
	for _, h := range hdrs {
		if _, ok := h.(*sip.ViaHeader); ok {
			n++
		}
	}
	f.ViaCount = n
	cseq := msg.CSeq()
	if cseq == nil {
		return fmt.Errorf("CSeq: %w", errMissing)
	}
	f.CSeqNum, f.CSeqMethod = cseq.SeqNo, string(cseq.MethodName)
	f.MaxForwards, f.HasMaxForwards = 0, false
	if mf != nil {
		f.MaxForwards, f.HasMaxForwards = int(*mf), true
	}
	f.ContentLength, f.HasContentLen = 0, false
	if cl := msg.ContentLength(); cl != nil {
		f.ContentLength, f.HasContentLen = int(*cl), true
	}
	to := msg.To()
	if to == nil {
		return fmt.Errorf("To: %w", errMissing)
	}
	f.ToTag, _ = to.Params.Get("tag")
	return nil
}

// SumSipgo folds f into a number, so that a benchmark can consume every
// field. It matches ViaductFields.Sum.
func SumSipgo(f *SipgoFields) int {
	return len(f.Method) + f.Status + len(f.CallID) + len(f.Branch) + len(f.ViaHost) +
		f.ViaPort + f.ViaCount + int(f.CSeqNum) + len(f.CSeqMethod) + f.MaxForwards +
		f.ContentLength + len(f.ToTag)
}
