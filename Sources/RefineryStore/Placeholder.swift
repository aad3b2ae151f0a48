// RefineryStore
