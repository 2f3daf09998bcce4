package dnscache

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// Limits that keep a hostile message cheap.
const (
	maxAnswers   = 64 // answer records read from one message
	maxChainHops = 16 // CNAMEs followed from the question
)

var errNotOneQuestion = errors.New("message does not carry exactly one question")

// question identifies what was asked; Name is lower case without the final
// dot.
type question struct {
	Name  string
	Type  dnsmessage.Type
	Class dnsmessage.Class
}

// message is what the cache needs of a DNS message.
type message struct {
	ID       uint16
	Response bool
	RCode    dnsmessage.RCode
	Question question
	CNAMEs   []cname
	Addrs    []addrRecord
}

type cname struct {
	Owner, Target string
	TTL           uint32
}

type addrRecord struct {
	Owner string
	Addr  netip.Addr
	TTL   uint32
}

// parse reads the header, the one question and the A, AAAA and CNAME
// answers of a DNS message; other records are skipped. golang.org/x/net's
// parser bounds compression pointers and never reads past the buffer, so
// a hostile message costs an error, not a panic or a loop.
func parse(b []byte) (message, error) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return message{}, err
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return message{}, err
	}
	if len(qs) != 1 {
		return message{}, errNotOneQuestion
	}
	qname, err := canonical(qs[0].Name)
	if err != nil {
		return message{}, err
	}
	m := message{
		ID: h.ID, Response: h.Response, RCode: h.RCode,
		Question: question{Name: qname, Type: qs[0].Type, Class: qs[0].Class},
	}
	if !h.Response {
		return m, nil
	}
	for i := 0; i < maxAnswers; i++ {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return m, err
		}
		if rh.Class != dnsmessage.ClassINET {
			if err := p.SkipAnswer(); err != nil {
				return m, err
			}
			continue
		}
		owner, err := canonical(rh.Name)
		if err != nil {
			return m, err
		}
		switch rh.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return m, err
			}
			m.Addrs = append(m.Addrs, addrRecord{owner, netip.AddrFrom4(r.A), rh.TTL})
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return m, err
			}
			m.Addrs = append(m.Addrs, addrRecord{owner, netip.AddrFrom16(r.AAAA), rh.TTL})
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				return m, err
			}
			target, err := canonical(r.CNAME)
			if err != nil {
				return m, err
			}
			m.CNAMEs = append(m.CNAMEs, cname{owner, target, rh.TTL})
		default:
			if err := p.SkipAnswer(); err != nil {
				return m, err
			}
		}
	}
	return m, nil
}

// canonical returns a name in lower case without the final dot, and refuses
// names that would be unreadable or misleading in a record: bytes outside
// printable ASCII, spaces, backslashes, empty labels.
func canonical(n dnsmessage.Name) (string, error) {
	s := n.String()
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return ".", nil // the root
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '\\' {
			return "", fmt.Errorf("name with byte %#x", c)
		}
		if c == '.' && (i == 0 || s[i-1] == '.') {
			return "", errors.New("name with an empty label")
		}
	}
	return strings.ToLower(s), nil
}
