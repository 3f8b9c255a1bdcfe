package fleetbench

import "time"

// Budgets of issue 11, measured on a 2-core machine with every simulated cluster
// heartbeating. One definition of each: the table prints them beside the figures.
const (
	// Light load, one change at a time.
	BudgetLightP50 = 5 * time.Millisecond
	BudgetLightP99 = 15 * time.Millisecond
	// 100 back-to-back changes: the last seen after the last write, and the p99.
	BudgetBurstLast = 20 * time.Millisecond
	BudgetBurstP99  = 30 * time.Millisecond
	// 100 clusters × 100 services × 10 endpoints at 100 changes/s.
	BudgetChurnP99 = 100 * time.Millisecond
	// Agent CPU under churn, and with heartbeats only, in % of one core.
	BudgetAgentCPUPercent = 25.0
	// Heartbeats with no freshness transition cost no rebuild.
	BudgetHeartbeatRebuilds = 0
	// One change reaches every one of 5,000 streams with this p99.
	BudgetFanoutP99 = 300 * time.Millisecond
	// Agent memory at 100,000 endpoints.
	BudgetAgentRSSBytes = 200 << 20
	// A new agent serves the full view (255 clusters × 1,000 endpoints).
	BudgetBootstrap = 2 * time.Second
)
