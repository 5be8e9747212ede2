package dataset

// RefreshLock is refreshLock for the tests of package dataset_test, which
// hold it as another collector replica in the middle of a refresh would.
const RefreshLock = refreshLock
