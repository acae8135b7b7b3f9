package controlplane

import (
	"net/http"
	"regexp"
	"strings"
)

// Route access levels beyond those of guard.
const (
	accessPublic  = 10 // anyone (sign-up, login, e-mailed links)
	accessCluster = 11 // the platform's own nodes (cluster secret)
)

// route is one platform API route: the table both serves the API and
// describes it (GET /api/cp/openapi.json), so the two cannot drift.
type route struct {
	method, path string
	access       int
	h            http.HandlerFunc
	tag, summary string
}

// routes is the platform API.
func (c *ControlPlane) routes() []route {
	return []route{
		{"POST", "/api/cp/auth/signup", accessPublic, c.write(c.handleSignup), "auth", "Create a customer account; a verification link is e-mailed. Answers 202 whether or not the address has an account."},
		{"GET", "/api/cp/auth/verify", accessPublic, c.write(c.handleVerify), "auth", "Verify an e-mail address (the e-mailed link)."},
		{"POST", "/api/cp/auth/verify", accessPublic, c.write(c.handleVerify), "auth", "Verify an e-mail address with the link's token."},
		{"POST", "/api/cp/auth/verify/resend", accessCaller, c.handleResendVerification, "auth", "E-mail a new verification link to the caller."},
		{"POST", "/api/cp/auth/login", accessPublic, c.write(c.handleLogin), "auth", "Log in: returns access_token (JWT, 15 minutes) and refresh_token."},
		{"POST", "/api/cp/auth/refresh", accessPublic, c.write(c.handleRefresh), "auth", "Exchange a refresh token for new tokens (the old refresh token stops working)."},
		{"POST", "/api/cp/auth/logout", accessCaller, c.write(c.handleLogout), "auth", "End the caller's session."},
		{"POST", "/api/cp/auth/password-reset", accessPublic, c.write(c.handleResetRequest), "auth", "E-mail a password-reset link. Answers 202 whether or not the address has an account."},
		{"GET", "/api/cp/auth/password-reset/confirm", accessPublic, c.handleResetForm, "auth", "The page the reset link opens: a form for the new password."},
		{"POST", "/api/cp/auth/password-reset/confirm", accessPublic, c.write(c.handleResetConfirm), "auth", "Set a new password with the reset link's token (JSON, or the reset page's form); ends every session."},
		{"POST", "/api/cp/auth/password", accessCaller, c.write(c.handleChangePassword), "auth", "Change the caller's password; ends their other sessions."},
		{"GET", "/api/cp/me", accessCaller, c.read(c.handleMe), "account", "The caller's own account and quota."},
		{"GET", "/api/cp/audit", accessCaller, c.read(c.handleAudit), "account", "Audit log, newest first: everything for operators, their own for customers."},
		{"GET", "/api/cp/quota-requests", accessCaller, c.read(c.handleListQuotaRequests), "account", "Quota requests: a customer's own, or everyone's for operators."},
		{"POST", "/api/cp/quota-requests", accessCaller, c.write(c.handleCreateQuotaRequest), "account", "Ask for more of a quota (one pending request per kind)."},
		{"POST", "/api/cp/quota-requests/{id}/approve", accessOperator, c.write(c.handleApproveQuota), "operator", "Approve a quota request: the new value applies at once."},
		{"POST", "/api/cp/quota-requests/{id}/reject", accessOperator, c.write(c.handleRejectQuota), "operator", "Reject a quota request with a reason."},

		{"POST", "/api/cp/tenants", accessCaller, c.write(c.handleCreateTenant), "tenants", "Create a tenant (customers: within max_tenants, verified e-mail required)."},
		{"GET", "/api/cp/tenants", accessCaller, c.read(c.handleListTenants), "tenants", "List tenants (customers see their own): ?state=active, archived, deleted or all (default: all but deleted)."},
		{"GET", "/api/cp/tenants/{id}", accessNode, c.read(c.handleGetTenant), "tenants", "A tenant's record."},
		{"PATCH", "/api/cp/tenants/{id}", accessCaller, c.write(c.handleUpdateTenant), "tenants", "Change a tenant's name or durability (operators also suspension and quota)."},
		{"DELETE", "/api/cp/tenants/{id}", accessCaller, c.write(c.handleDeleteTenant), "tenants", "Delete a tenant (its data is kept for the grace period)."},
		{"POST", "/api/cp/tenants/{id}/sso", accessCaller, c.write(c.handleSSO), "tenants", "A one-time URL that opens the tenant's admin UI signed in."},
		{"GET", "/api/cp/tenants/{id}/metrics", accessCaller, c.leaderOnly(c.handleTenantMetrics), "tenants", "The tenant's last minute: requests and errors per second, latency p95, storage, replication lag."},
		{"GET", "/api/cp/tenants/{id}/restore-points", accessCaller, c.handleRestorePoints, "backups", "The tenant's restorable window, per ownership epoch."},
		{"POST", "/api/cp/tenants/{id}/pitr", accessCaller, c.write(c.handlePITR), "backups", "Restore the tenant to a moment, in place ({timestamp}) or into a new tenant ({timestamp, fork})."},
		{"GET", "/api/cp/tenants/{id}/export", accessCaller, c.handleExport, "backups", "The tenant as one archive (a PocketBase pb_data directory, gzipped tar)."},
		{"POST", "/api/cp/tenants/import", accessCaller, c.write(c.handleImport), "backups", "Create a tenant (?id=) from an archive in the body."},
		{"GET", "/api/cp/tenants/{id}/backups", accessCaller, c.handleListBackups, "backups", "The tenant's named backups."},
		{"POST", "/api/cp/tenants/{id}/backups", accessCaller, c.handleCreateBackup, "backups", "Store a named backup of the tenant ({name}, default a timestamp)."},
		{"DELETE", "/api/cp/tenants/{id}/backups/{name}", accessCaller, c.handleDeleteBackup, "backups", "Delete a named backup."},
		{"POST", "/api/cp/tenants/{id}/backups/{name}/restore", accessCaller, c.write(c.handleRestoreBackup), "backups", "Restore a named backup in place (undoable like a point-in-time restore)."},
		{"POST", "/api/cp/tenants/{id}/archive", accessOperator, c.write(c.handleArchive), "backups", "Archive the tenant now (as idle tenants are archived)."},
		{"POST", "/api/cp/tenants/{id}/unarchive", accessOperator, c.write(c.handleUnarchive), "backups", "Open an archived tenant now (its next request would)."},
		{"POST", "/api/cp/tenants/{id}/restore", accessOperator, c.write(c.handleRestoreTenant), "tenants", "Restore a deleted tenant within its grace period."},
		{"POST", "/api/cp/tenants/{id}/admins", accessOperator, c.write(c.handleCreateAdmin), "tenants", "Create a PocketBase superuser in the tenant."},
		{"PUT", "/api/cp/tenants/{id}/domains", accessOperator, c.write(c.handleSetDomains), "tenants", "Replace the tenant's custom domains."},
		{"POST", "/api/cp/tenants/{id}/move", accessOperator, c.write(c.handleMoveTenant), "fleet", "Move a tenant to another node."},

		{"GET", "/api/cp/users", accessOperator, c.read(c.handleListUsers), "operator", "List and search customers (?q=, ?limit=)."},
		{"GET", "/api/cp/users/{id}", accessOperator, c.read(c.handleGetUser), "operator", "A customer with their tenants, quota requests and sessions."},
		{"PATCH", "/api/cp/users/{id}", accessOperator, c.write(c.handleUpdateUser), "operator", "Set a customer's quota, suspension or verification."},
		{"DELETE", "/api/cp/users/{id}", accessOperator, c.write(c.handleDeleteUser), "operator", "Delete a customer who owns no tenants."},
		{"POST", "/api/cp/users/{id}/impersonate", accessOperator, c.write(c.handleImpersonate), "operator", "A time-boxed access token acting as the customer (audited as impersonation)."},
		{"DELETE", "/api/cp/sessions/{id}", accessOperator, c.write(c.handleRevokeSession), "operator", "End a session (a login or an impersonation)."},
		{"GET", "/api/cp/tokens", accessOperator, c.read(c.handleListTokens), "operator", "List operator tokens (secrets are never shown again)."},
		{"POST", "/api/cp/tokens", accessOperator, c.write(c.handleCreateToken), "operator", "Create an operator token; its secret is in this answer only."},
		{"DELETE", "/api/cp/tokens/{id}", accessOperator, c.write(c.handleRevokeToken), "operator", "Revoke an operator token."},

		{"GET", "/api/cp/raft/status", accessNode, c.handleRaftStatus, "cluster", "This control-plane node's Raft state."},
		{"POST", "/api/cp/raft/join", accessNode, c.write(c.handleRaftJoin), "cluster", "Add a control-plane node."},
		{"POST", "/api/cp/raft/remove", accessOperator, c.write(c.handleRaftRemove), "cluster", "Remove a control-plane node."},
		{"POST", "/api/cp/raft/snapshot", accessOperator, c.handleRaftSnapshot, "cluster", "Take a Raft snapshot now."},
		{"GET", "/api/cp/health", accessOperator, c.leaderOnly(c.handleHealth), "fleet", "The platform's health: Raft, checks, and every tenant node's last heartbeat and state."},
		{"GET", "/api/cp/nodes", accessOperator, c.leaderOnly(c.handleListNodes), "fleet", "Tenant nodes with their leases and load."},
		{"GET", "/api/cp/nodes/{id}", accessNode, c.leaderOnly(c.handleGetNode), "fleet", "One tenant node."},
		{"POST", "/api/cp/nodes/{id}/drain", accessNode, c.write(c.handleDrainNode), "fleet", "Move every tenant off a node."},
		{"POST", "/api/cp/rebalance", accessOperator, c.write(c.handleRebalance), "fleet", "Spread tenants over the nodes."},
		{"GET", "/api/cp/openapi.json", accessPublic, c.handleOpenAPI, "meta", "This API as an OpenAPI 3.1 document."},
		{"GET", "/api/cp/webhooks", accessOperator, c.read(c.handleListWebhooks), "events", "Webhooks receiving the platform's events."},
		{"POST", "/api/cp/webhooks", accessOperator, c.write(c.handleCreateWebhook), "events", "Register a webhook: {url, types, secret}; deliveries are signed with the secret (shown once)."},
		{"DELETE", "/api/cp/webhooks/{id}", accessOperator, c.write(c.handleDeleteWebhook), "events", "Remove a webhook."},
		{"GET", "/api/cp/webhooks/{id}/deliveries", accessOperator, c.leaderOnly(c.handleWebhookDeliveries), "events", "The leader's log of a webhook's delivery attempts."},
		{"GET", "/api/cp/events", accessCaller, c.handleEvents, "events", "The platform's events (server-sent events with Accept: text/event-stream, resumable by Last-Event-ID or ?after=; else one JSON page). Customers see their own."},

		{"POST", "/api/cp/internal/nodes", accessCluster, c.write(c.handleRegisterNode), "internal", "Register a tenant node."},
		{"POST", "/api/cp/internal/heartbeat", accessCluster, c.leaderOnly(c.handleHeartbeat), "internal", "Renew a tenant node's lease."},
		{"POST", "/api/cp/internal/route/{id}", accessCluster, c.leaderOnly(c.handleRoute), "internal", "Resolve (and place) a tenant's route."},
		{"POST", "/api/cp/internal/tenants/{id}/advance", accessCluster, c.write(c.handleAdvanceEpoch), "internal", "Advance a tenant's ownership epoch."},
		{"GET", "/api/cp/internal/watch", accessCluster, c.handleWatch, "internal", "Stream of registry changes."},
		{"POST", "/api/cp/internal/sso/redeem", accessCluster, c.write(c.handleRedeemSSO), "internal", "Use up an SSO ticket for a tenant."},
	}
}

var pathParam = regexp.MustCompile(`\{([a-z]+)\}`)

// accessNames name the access levels in the OpenAPI document
// (x-pbe-access on each operation).
var accessNames = map[int]string{
	accessOperator: "operator",
	accessCaller:   "customer",
	accessNode:     "node",
	accessPublic:   "public",
	accessCluster:  "cluster",
}

// handleOpenAPI describes the routes table as OpenAPI 3.1.
func (c *ControlPlane) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.OpenAPI())
}

// OpenAPI returns the platform API's OpenAPI document.
func (c *ControlPlane) OpenAPI() map[string]any {
	paths := map[string]any{}
	for _, rt := range c.routes() {
		item, _ := paths[rt.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.path] = item
		}
		op := map[string]any{
			"summary":     rt.summary,
			"tags":        []string{rt.tag},
			"operationId": operationID(rt),
			"responses": map[string]any{
				"default": map[string]any{"description": "JSON answer; errors are {code, message, data}", "content": map[string]any{
					"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}},
			},
		}
		if rt.access != accessPublic {
			sec := "bearer"
			if rt.access == accessCluster {
				sec = "clusterSecret"
			}
			op["security"] = []any{map[string]any{sec: []string{}}}
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.method == "POST" || rt.method == "PATCH" || rt.method == "PUT" {
			op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
		}
		op["x-pbe-access"] = accessNames[rt.access]
		item[strings.ToLower(rt.method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "pbe platform API", "version": "1"},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearer":        map[string]any{"type": "http", "scheme": "bearer", "description": "an operator token (pbe_...) or a customer's access token (JWT)"},
				"clusterSecret": map[string]any{"type": "apiKey", "in": "header", "name": "X-Pbe-Secret"},
			},
			"schemas": map[string]any{
				"Error": map[string]any{"type": "object", "required": []string{"code", "message"}, "properties": map[string]any{
					"code": map[string]any{"type": "string"}, "message": map[string]any{"type": "string"}, "data": map[string]any{"type": "object"}}},
			},
		},
	}
}

func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.method))
	for _, part := range strings.Split(strings.TrimPrefix(rt.path, "/api/cp/"), "/") {
		part = strings.Trim(part, "{}")
		for _, w := range strings.FieldsFunc(part, func(r rune) bool { return r == '-' || r == '.' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}
