# deploy/windows/install-service.ps1: install the OP25B Observatory agent
# as a Windows service (docs/volunteer.md). In PowerShell as Administrator,
# next to the downloaded op25b-agent_VERSION_windows_amd64.exe:
#
#   .\install-service.ps1 -Exe .\op25b-agent_VERSION_windows_amd64.exe `
#       -Collector collector.example:8443 -Enroll TOKEN
#
# It copies the agent to "C:\Program Files\op25b-agent", registers the
# service op25b-agent (started at boot, as LocalService: probing needs no
# privilege; restarted 30 s after a failure), and starts it. Its key,
# credential, spool and log (op25b-agent.log) are in
# C:\ProgramData\op25b-agent. Remove it with:
#
#   Stop-Service op25b-agent; sc.exe delete op25b-agent
#
# Stopping the service lets the round in flight finish and the spool drain
# for up to 10 s, as SIGTERM does on Linux.
param(
	[Parameter(Mandatory = $true)] [string] $Exe,
	[Parameter(Mandatory = $true)] [string] $Collector,
	[string] $CollectorCA = "",
	[string] $Enroll = "",
	[string] $Label = ""
)
$ErrorActionPreference = "Stop"

$dir = Join-Path $env:ProgramFiles "op25b-agent"
$state = Join-Path $env:ProgramData "op25b-agent"
New-Item -ItemType Directory -Force -Path $dir, $state | Out-Null
$bin = Join-Path $dir "op25b-agent.exe"
Copy-Item -Force $Exe $bin
# LocalService owns the state directory; nobody else may read the key.
icacls $state /inheritance:r /grant:r "NT AUTHORITY\LocalService:(OI)(CI)F" "BUILTIN\Administrators:(OI)(CI)F" | Out-Null

$run = @("run", "--collector", $Collector, "--state-dir", "`"$state`"")
if ($CollectorCA) { $run += @("--collector-ca", "`"$CollectorCA`"") }
if ($Enroll) { $run += @("--enroll", $Enroll) }
if ($Label) { $run += @("--label", "`"$Label`"") }

New-Service -Name "op25b-agent" -DisplayName "OP25B Observatory agent" `
	-Description "Measures whether this line blocks outbound SMTP (port 25) and leaves submission open." `
	-BinaryPathName ("`"$bin`" " + ($run -join " ")) -StartupType Automatic | Out-Null
sc.exe config op25b-agent obj= "NT AUTHORITY\LocalService" | Out-Null
sc.exe failure op25b-agent reset= 86400 actions= restart/30000/restart/30000/restart/300000 | Out-Null
Start-Service op25b-agent
Get-Service op25b-agent
