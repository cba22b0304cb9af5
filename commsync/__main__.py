from commsync.cli import main

main()
