// Package mdns finds the user's devices on the local network with
// multicast DNS (github.com/hashicorp/mdns, over IPv4 and IPv6), following
// the contract of package discovery.
//
// Every device of a mesh answers, in each rotation epoch, for one service
// name derived from the mesh secret ("_" + discovery.Name(secret,
// "mdns/service", epoch) + "._udp.local."), under an instance name, a host
// name and an SRV port derived for this device and epoch. None of them is
// stable: they all change every rotation period (discovery.DefaultPeriod
// unless Config.Period says otherwise) and with every secret generation.
// The address record is the unspecified address 0.0.0.0 (the same for every
// device): the real addresses travel only inside the TXT record, which
// holds one sealed announcement (discovery.Seal, purpose "mdns") in
// unpadded base64, cut into strings of at most 200 characters. Outsiders
// therefore see, per epoch, random-looking names that link nothing across
// epochs, and an opaque blob; members open it and check it was signed by a
// trusted device.
//
// A device looks for its peers by querying the service names of the
// epochs around now (clocks may differ by discovery.DefaultMaxSkew) every
// Config.Interval (more often in the first seconds of a run), and answers
// queries for them through a hashicorp/mdns
// server whose zone is computed at each question, so a secret rotation or an
// address change is served at once. mDNS answers are sent to the querier
// (the library's unicast reply to the query's source).
//
// mDNS needs a multicast route: on a machine, the default route usually
// provides it; in a network namespace, add one (ip route add 224.0.0.0/4
// dev <if>). Without one, Run fails with the library's error and the node
// retries later. Queries and the server use the interface that route
// selects.
package mdns
