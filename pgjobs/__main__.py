from pgjobs.cli import main

main()
