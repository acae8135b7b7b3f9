package tenantnode

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"

	"modernc.org/sqlite"
)

// sqliteLimitAttached is SQLITE_LIMIT_ATTACHED.
const sqliteLimitAttached = 7

func init() {
	sqlite.RegisterConnectionHook(refuseAttach)
}

// refuseAttach sets SQLITE_LIMIT_ATTACHED to 0 on every connection to a
// tenant database: tenant code runs SQL on it (hooks, $app.db()), and
// ATTACH (or VACUUM INTO, which attaches) would open any file the process
// can reach, another tenant's database among them. The platform's own
// VACUUM INTO raises the limit on its connection for that statement.
//
// modernc's driver sets limits only through a *sql.Conn; the connection
// being opened is wrapped in a throwaway one-connection pool for that
// call and then left to it (closing that pool does not close a connection
// still held).
func refuseAttach(c sqlite.ExecQuerierContext, dsn string) error {
	if !strings.HasSuffix(dsn, sqlitePragmas) {
		return nil
	}
	dc, ok := c.(driver.Conn)
	if !ok {
		return errors.New("refuse ATTACH: the SQLite connection is not a driver.Conn")
	}
	db := sql.OpenDB(oneConn{dc})
	defer db.Close()
	sc, err := db.Conn(context.Background())
	if err != nil {
		return err
	}
	_, err = sqlite.Limit(sc, sqliteLimitAttached, 0)
	return err
}

// oneConn is a connector that hands out one existing connection.
type oneConn struct{ c driver.Conn }

func (o oneConn) Connect(context.Context) (driver.Conn, error) { return o.c, nil }
func (o oneConn) Driver() driver.Driver                        { return nil }
