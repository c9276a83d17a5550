# Python 2.7 -- run with the suite's virtualenv python (see setup.sh).
#
# Runs `wstest` with every listening socket bound to one interface
# (default 127.0.0.1) instead of all interfaces. wstest's server modes
# (fuzzingserver, echoserver) call listenTCP(port, factory, backlog, '')
# with no way to choose the interface from the command line, so we wrap the
# reactor's listen methods before handing over to wstest's own entry point.
#
# Usage: python wstest_local.py [wstest options...]
# Environment: WSECHO_BIND_ADDR (default 127.0.0.1)
import os
import sys

# wstest picks and installs its reactor when imported; import it first.
from autobahntestsuite import wstest
from twisted.internet import reactor

BIND = os.environ.get("WSECHO_BIND_ADDR", "127.0.0.1")

_listenTCP = reactor.listenTCP
_listenSSL = reactor.listenSSL


def listenTCP(port, factory, backlog=50, interface=""):
    return _listenTCP(port, factory, backlog, interface or BIND)


def listenSSL(port, factory, contextFactory, backlog=50, interface=""):
    return _listenSSL(port, factory, contextFactory, backlog, interface or BIND)


reactor.listenTCP = listenTCP
reactor.listenSSL = listenSSL

sys.argv[0] = "wstest"
wstest.run()
