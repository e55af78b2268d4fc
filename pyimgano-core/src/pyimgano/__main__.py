from pyimgano.cli import main

raise SystemExit(main())
