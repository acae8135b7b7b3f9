package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pbe/pbe/controlplane"
)

func newClusterCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect and change the control-plane cluster"}
	o.register(cmd)
	cmd.AddCommand(clusterStatusCmd(&o), clusterRemoveCmd(&o), clusterJoinCmd(&o))
	return cmd
}

func clusterStatusCmd(o *clientOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the Raft status of the node that answers: role, term, indexes, leader, peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			st, err := c.RaftStatus(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "node %s (%s) is %s, term %d, commit %d, applied %d, last snapshot %d\n",
				st.NodeID, st.Addr, st.Role, st.Term, st.CommitIndex, st.AppliedIndex, st.LastSnapshotIndex)
			fmt.Fprintf(w, "leader %s (%s), cluster %s\n\n", st.LeaderID, st.LeaderAddr, st.ClusterID)
			api := map[string]string{}
			for _, m := range st.Members {
				api[m.ID] = m.APIAddr
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tRAFT ADDRESS\tAPI ADDRESS\tSUFFRAGE")
			for _, p := range st.Peers {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.Addr, api[p.ID], p.Suffrage)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func clusterRemoveCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove <node-id>",
		Short: "Remove a control-plane node from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.RemoveNode(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return nil
		},
	}
}

func clusterJoinCmd(o *clientOptions) *cobra.Command {
	var req controlplane.JoinRequest
	cmd := &cobra.Command{
		Use:   "join <node-id>",
		Short: "Add a control-plane node (started with --join or with no peers) to the cluster as a voter",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			req.ID = args[0]
			if err := c.Join(cmd.Context(), req); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "joined %s\n", req.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.RaftAddr, "raft-addr", "", "the node's Raft address (host:port)")
	cmd.Flags().StringVar(&req.APIAddr, "api-addr", "", "the node's platform API address (host:port)")
	return cmd
}
